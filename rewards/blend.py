"""Rewards for GRPO from execution, from a reward model, or a blend of both (pure functions).

`blend` is alpha times the reward model's score plus (1 - alpha) times the execution reward, each first
normalised within its group (zero mean, unit std; a group whose values are all equal normalises to 0),
so neither source dominates by its scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

RewardKind = Literal["execution", "rm", "blend"]
REWARD_KINDS = ("execution", "rm", "blend")


def normalise_per_group(values: Sequence[float], group_size: int, eps: float = 1e-6) -> list[float]:
    """Each value minus its group's mean, divided by the group's (population) std."""
    if group_size < 1 or len(values) % group_size:
        raise ValueError(f"group_size={group_size} does not divide {len(values)} values")
    out: list[float] = []
    for start in range(0, len(values), group_size):
        group = values[start : start + group_size]
        mean = sum(group) / group_size
        std = (sum((v - mean) ** 2 for v in group) / group_size) ** 0.5
        out += [0.0 if std < eps else (v - mean) / std for v in group]
    return out


def combine(
    kind: RewardKind,
    execution: Sequence[float],
    rm: Sequence[float] | None,
    group_size: int,
    alpha: float = 0.5,
) -> list[float]:
    """The reward GRPO trains on, laid out group after group like its inputs."""
    if kind == "execution":
        return list(execution)
    if rm is None:
        raise ValueError(f"reward kind {kind!r} needs reward-model scores")
    if len(rm) != len(execution):
        raise ValueError(f"{len(rm)} reward-model scores for {len(execution)} completions")
    if kind == "rm":
        return list(rm)
    if kind == "blend":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"blend alpha={alpha} must be within [0, 1]")
        r, e = normalise_per_group(rm, group_size), normalise_per_group(execution, group_size)
        return [alpha * a + (1 - alpha) * b for a, b in zip(r, e, strict=True)]
    raise ValueError(f"reward kind {kind!r} is not one of {', '.join(REWARD_KINDS)}")
