"""A custom checker for tests/rewards/fixtures/formats.jsonl, given by `_target_`-style dotted path."""


def is_divisor(input: str, expected: str, got: str) -> bool:
    n, d = int(input), got.strip()
    return d.lstrip("-").isdigit() and 1 < int(d) < n and n % int(d) == 0
