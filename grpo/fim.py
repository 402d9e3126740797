"""Fill-in-the-middle: rewrite a code document so that a left-to-right model learns to fill a hole.

A document is cut at two points into prefix, middle and suffix, then laid out as (Bavarian et al. 2022,
arXiv 2207.14255; DeepSeek-Coder-V2 trains with PSM at rate 0.5):

    PSM:  <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM:  <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle

SPM is the variant of that paper's appendix D in which the prefix follows the `<fim_middle>` sentinel,
so the middle continues the prefix with no seam. Every character of the document appears exactly once;
only the sentinels are added. The transform works on text, per document, before tokenisation and
packing. Cut points are characters (`unit="char"`) or line boundaries (`unit="line"`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

Layout = Literal["psm", "spm"]
Unit = Literal["char", "line"]


@dataclass(frozen=True)
class FimTokens:
    prefix: str
    middle: str
    suffix: str
    pad: str | None = None


# Known sentinel sets, tried in order; the first whose three sentinels the tokenizer has is used.
QWEN = FimTokens("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>")
STARCODER = FimTokens("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>")
DEEPSEEK = FimTokens("<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜fim▁hole｜>")  # begin, then hole, then end
KNOWN_TOKENS = (QWEN, STARCODER, DEEPSEEK)


@dataclass(frozen=True)
class FimConfig:
    rate: float = 0.5  # fraction of documents transformed
    spm_rate: float = 0.0  # fraction of the transformed ones laid out as SPM instead of PSM
    unit: Unit = "char"

    def __post_init__(self) -> None:
        for name in ("rate", "spm_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fim.{name} must be in [0, 1], got {value}")
        if self.unit not in ("char", "line"):
            raise ValueError(f"fim.unit {self.unit!r} is not one of char, line")


def split_points(text: str, rng: random.Random, unit: Unit) -> tuple[int, int]:
    """Two cut points `0 <= i <= j <= len(text)`, uniform over characters or over line boundaries."""
    if unit == "line":
        bounds = [0] + [k + 1 for k, ch in enumerate(text) if ch == "\n" and k + 1 < len(text)] + [len(text)]
        i, j = sorted(rng.choice(bounds) for _ in range(2))
    else:
        i, j = sorted(rng.randint(0, len(text)) for _ in range(2))
    return i, j


def layout(prefix: str, middle: str, suffix: str, tokens: FimTokens, mode: Layout) -> str:
    if mode == "psm":
        return f"{tokens.prefix}{prefix}{tokens.suffix}{suffix}{tokens.middle}{middle}"
    if mode == "spm":
        return f"{tokens.prefix}{tokens.suffix}{suffix}{tokens.middle}{prefix}{middle}"
    raise ValueError(f"FIM layout {mode!r} is not one of psm, spm")


def fim_transform(text: str, rng: random.Random, config: FimConfig, tokens: FimTokens) -> str:
    """With probability `config.rate`, the document in a FIM layout; otherwise unchanged."""
    if not text or rng.random() >= config.rate:
        return text
    i, j = split_points(text, rng, config.unit)
    mode: Layout = "spm" if rng.random() < config.spm_rate else "psm"
    return layout(text[:i], text[i:j], text[j:], tokens, mode)


def fim_tokens_for(tokenizer: Any) -> FimTokens | None:
    """The tokenizer's own FIM sentinels, when it has a known set."""
    vocab = tokenizer.get_vocab()
    for tokens in KNOWN_TOKENS:
        if all(t in vocab for t in (tokens.prefix, tokens.middle, tokens.suffix)):
            return tokens
    return None


def add_special_tokens(tokenizer: Any, model: Any, tokens: list[str]) -> list[str]:
    """Add the `tokens` the tokenizer lacks as special tokens and resize the model's embeddings to match.

    New rows are initialised to the mean of the existing embeddings (transformers' default), so the
    model's outputs on old tokens do not change. Returns the tokens that were added.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return missing


def ensure_fim_tokens(tokenizer: Any, model: Any) -> tuple[FimTokens, list[str]]:
    """The tokenizer's FIM sentinels, adding Qwen-style ones (and embedding rows) when it has none."""
    found = fim_tokens_for(tokenizer)
    if found is not None:
        return found, []
    wanted = [QWEN.prefix, QWEN.middle, QWEN.suffix, QWEN.pad or ""]
    return QWEN, add_special_tokens(tokenizer, model, wanted)
