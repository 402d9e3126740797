"""What a grader returns (DESIGN.md section 3.2), reward shaping, and pass@k: small pure functions."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

VERDICTS = (
    "passed", "wrong_answer", "compile_error", "runtime_error", "timeout", "memory_limit", "output_limit",
    "no_code", "sandbox_error",
)  # fmt: skip


# Runs cut short: their passed tests earn nothing, whatever the reward kind (a timeout is never rewarded).
UNFINISHED = ("timeout", "memory_limit", "output_limit")


@dataclass(frozen=True)
class Failure:
    """The first failing test, for logs: what went in, what was expected, what came out."""

    input: str | None = None
    expected: str | None = None
    got: str | None = None
    message: str = ""
    truncated: bool = False


@dataclass
class Grade:
    """One completion's grade. `reward` is already shaped; a `sandbox_error` is never a wrong answer:
    it says the grader failed, and its reward must not be used (it is 0.0 only to stay a float)."""

    passed: bool
    reward: float
    verdict: str
    tests_passed: int
    tests_total: int
    failure: Failure | None = None
    time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")

    @property
    def grader_failed(self) -> bool:
        return self.verdict == "sandbox_error"

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["failure"] = asdict(self.failure) if self.failure else None
        return row


class Grader(Protocol):
    """Anything with this method is a grader; a config selects one with Hydra's `_target_`."""

    def grade(self, problem: Any, completions: list[str]) -> list[Grade]: ...


@dataclass(frozen=True)
class RewardConfig:
    """How a verdict becomes a reward.

    kind: `binary` (1 when every test passes) or `fraction` (tests passed / tests total; a run cut
        short by a timeout, memory or output limit earns 0 for the tests it passed first).
    compile_error_penalty, timeout_penalty: added (use negative values) for those verdicts.
    format_reward: added when the completion put its code in a fenced block of the right language.
    max_length, overlong_buffer, overlong_penalty: DAPO's soft overlong punishment, on token counts:
    0 up to max_length - overlong_buffer, then falling linearly to -overlong_penalty at max_length.
    """

    kind: Literal["binary", "fraction"] = "binary"
    compile_error_penalty: float = 0.0
    timeout_penalty: float = 0.0
    format_reward: float = 0.0
    max_length: int | None = None
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("binary", "fraction"):
            raise ValueError(f"reward kind {self.kind!r} is not one of binary, fraction")
        if self.max_length is not None and not 0 <= self.overlong_buffer <= self.max_length:
            raise ValueError(
                f"overlong_buffer={self.overlong_buffer} must be within [0, max_length={self.max_length}]"
            )


def shape_reward(
    verdict: str,
    tests_passed: int,
    tests_total: int,
    config: RewardConfig,
    *,
    well_formatted: bool = False,
    length: int | None = None,
) -> float:
    """The reward for one graded completion (0.0 for a sandbox_error, which callers must not use)."""
    if verdict == "sandbox_error":
        return 0.0
    if config.kind == "binary" or verdict in UNFINISHED:
        reward = 1.0 if verdict == "passed" else 0.0
    else:
        reward = tests_passed / tests_total if tests_total else float(verdict == "passed")
    if verdict == "compile_error":
        reward += config.compile_error_penalty
    if verdict == "timeout":
        reward += config.timeout_penalty
    if well_formatted:
        reward += config.format_reward
    if length is not None and config.max_length is not None:
        reward += overlong_penalty(length, config.max_length, config.overlong_buffer, config.overlong_penalty)
    return reward


def overlong_penalty(length: int, max_length: int, buffer: int, penalty: float = 1.0) -> float:
    """DAPO's soft overlong punishment: 0 until max_length - buffer, then linear down to -penalty."""
    start = max_length - buffer
    if length <= start:
        return 0.0
    if buffer == 0 or length >= max_length:
        return -penalty
    return -penalty * (length - start) / buffer


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of the Codex paper: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
