"""What rollout workers return, and the protocol they implement.

A worker samples `group_size` completions for each prompt and returns, for every completion, its
token ids, text, the sampling log-probability of each token and why it stopped. The learner needs
those log-probabilities as `old_logprobs` and the token ids to recompute its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings; the names are vLLM's `SamplingParams` arguments."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} is not a number")
            return float(value)

        if number("temperature") < 0:
            raise ValueError(f"temperature={self.temperature} must be 0 (greedy) or more")
        if not 0 < number("top_p") <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if number("top_k") < 0 or number("max_tokens") < 1:
            raise ValueError(f"top_k={self.top_k} must be 0 or more, max_tokens={self.max_tokens} 1 or more")


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    logprobs: list[float]  # sampling log-probability of each token in token_ids
    finish_reason: FinishReason


@dataclass
class Group:
    """The `group_size` completions sampled for one prompt."""

    prompt: str
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


class RolloutWorker(Protocol):
    def generate(self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig) -> list[Group]:
        """One group per prompt, in the order of `prompts`."""
        ...

    def generate_stream(
        self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Group]]]:
        """The same groups, as they finish: batches of (index in `prompts`, group)."""
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> object:
        """Take new weights (HF parameter names, as the learner's `named_parameters`) before the next call."""
        ...


def in_prompt_order(batches: Iterable[list[tuple[int, Group]]], num_prompts: int) -> list[Group]:
    """Collect `generate_stream`'s batches of (prompt index, group) into one group per prompt, in order."""
    groups: list[Group | None] = [None] * num_prompts
    for batch in batches:
        for i, group in batch:
            groups[i] = group
    missing = [i for i, g in enumerate(groups) if g is None]
    if missing:
        raise RuntimeError(f"no group came back for prompts {missing}")
    return groups  # type: ignore[return-value]  # none is None
