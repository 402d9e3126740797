"""grpo: advantages, losses, model loading and rollout workers (DESIGN.md section 2)."""
