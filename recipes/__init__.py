"""Entry points; the only code that reads a config (DESIGN.md section 2)."""
