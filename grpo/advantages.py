"""Group-relative advantages (DeepSeekMath section 4.1.2), as pure tensor functions.

Rewards are laid out group after group: the G completions of prompt 0, then the G of prompt 1, ...
"""

from __future__ import annotations

from typing import Literal

import torch

Scale = Literal["group", "batch", "none"]
Baseline = Literal["mean", "loo"]


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    scale: Scale = "group",
    eps: float = 1e-4,
    baseline: Baseline = "mean",
) -> torch.Tensor:
    """Outcome advantages: each reward minus its group's baseline, optionally divided by a std.

    Args:
        rewards: `[N]` with N = num_groups * group_size.
        group_size: G, the completions sampled per prompt.
        scale: `group` divides by the unbiased std of each group (DeepSeekMath, TRL's default);
            `batch` by the unbiased std of all N advantages' rewards (TRL's `scale_rewards="batch"`);
            `none` leaves them unscaled (Dr. GRPO).
        eps: added to the std, so a group whose rewards are all equal gets advantages of 0.
        baseline: `mean` subtracts the group mean; `loo` subtracts the mean of the other G - 1
            rewards (RLOO), which equals `G / (G - 1)` times the `mean` advantage.

    Returns:
        `[N]` advantages, in the layout of `rewards`.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {rewards.numel()} rewards")
    if baseline == "loo" and group_size < 2:
        raise ValueError("baseline='loo' needs group_size >= 2")
    grouped = rewards.float().view(-1, group_size)  # [B, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [B, 1]
    advantages = grouped - mean  # [B, G]
    if baseline == "loo":
        advantages = advantages * group_size / (group_size - 1)
    elif baseline != "mean":
        raise ValueError(f"unknown baseline {baseline!r}: expected 'mean' or 'loo'")
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
        advantages = advantages / (std + eps)
    elif scale == "batch":
        std = rewards.float().std() if rewards.numel() > 1 else rewards.new_zeros(())
        advantages = advantages / (std + eps)
    elif scale != "none":
        raise ValueError(f"unknown scale {scale!r}: expected 'group', 'batch' or 'none'")
    return advantages.view(-1)


def process_advantages(
    step_rewards: torch.Tensor,
    step_mask: torch.Tensor,
    step_end: torch.Tensor,
    num_tokens: int,
    group_size: int,
    *,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Process-supervision advantages (DeepSeekMath section 4.1.3).

    Step rewards are normalised by the mean and std of all step rewards in the group; a token's
    advantage is the sum of the normalised rewards of the steps that end at or after it.

    Args:
        step_rewards: `[N, S]` reward of each step (padded).
        step_mask: `[N, S]` 1 where a step exists.
        step_end: `[N, S]` index of the last token of each step in the completion.
        num_tokens: T, the completion length the result is laid out on.
        group_size: G.

    Returns:
        `[N, T]` per-token advantages.
    """
    n, s = step_rewards.shape
    if n % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {n} completions")
    mask = step_mask.bool()
    rewards = step_rewards.float().view(-1, group_size * s)  # [B, G*S]
    m = mask.view(-1, group_size * s)  # [B, G*S]
    count = m.sum(dim=1, keepdim=True).clamp(min=1)  # [B, 1]
    mean = (rewards * m).sum(dim=1, keepdim=True) / count  # [B, 1]
    var = (((rewards - mean) * m) ** 2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    normed = ((rewards - mean) / (var.sqrt() + eps) * m).view(n, s)  # [N, S]
    token = torch.arange(num_tokens, device=step_rewards.device)  # [T]
    ends_after = step_end.unsqueeze(1) >= token.view(1, -1, 1)  # [N, T, S]
    return (normed.unsqueeze(1) * ends_after).sum(dim=-1)  # [N, T]
