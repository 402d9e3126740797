"""Output checkers for stdio problems, run in the grader's process: expected outputs never enter the sandbox.

A checker is named in the problem row's `checker` column (DESIGN.md section 3.1):
- `exact`: equal after dropping trailing whitespace on each line and trailing blank lines (what
  competitive-programming judges call an exact match);
- `tokens`: equal as whitespace-separated tokens;
- `float:TOL`: token by token, numbers equal within absolute or relative tolerance TOL, other tokens
  exactly;
- a `_target_` (`module.function` or `module:function`): a Python callable `f(input, expected, got)`
  returning a bool, imported in the grader's process;
- a checker program (a path ending in a language's extension, e.g. `checkers/perm.py` or `chk.cpp`): a
  special judge run in the sandbox, in a job of its own, with `input.txt`, `expected.txt` and
  `output.txt` in its working directory; exit status 0 accepts.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CheckFn = Callable[[str, str, str], bool]

PROGRAM_EXTENSIONS = {
    ".py": "python", ".c": "c", ".cpp": "cpp", ".cc": "cpp", ".java": "java", ".js": "javascript",
    ".rs": "rust", ".go": "go", ".sh": "bash", ".rb": "ruby", ".php": "php", ".lua": "lua",
}  # fmt: skip


class CheckerError(ValueError):
    """A checker name that is not one of the forms above, or a custom checker that cannot be loaded."""


@dataclass(frozen=True)
class CheckerProgram:
    """A special judge run in the sandbox; see the module docstring."""

    language: str
    code: str
    path: str


def exact(_input: str, expected: str, got: str) -> bool:
    return _lines(expected) == _lines(got)


def tokens(_input: str, expected: str, got: str) -> bool:
    return expected.split() == got.split()


def float_tokens(tol: float) -> CheckFn:
    def check(_input: str, expected: str, got: str) -> bool:
        want, have = expected.split(), got.split()
        return len(want) == len(have) and all(
            _token_close(w, h, tol) for w, h in zip(want, have, strict=True)
        )

    return check


def _token_close(want: str, have: str, tol: float) -> bool:
    if want == have:
        return True
    try:
        a, b = float(want), float(have)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol or abs(a - b) <= tol * abs(a)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def resolve_checker(name: str, base_dir: Path | None = None) -> CheckFn | CheckerProgram:
    """The checker a problem names; raises `CheckerError` naming what is wrong."""
    if name in ("exact", ""):
        return exact
    if name == "tokens":
        return tokens
    if name.startswith("float:"):
        try:
            tol = float(name.split(":", 1)[1])
        except ValueError:
            raise CheckerError(f"checker {name!r}: the tolerance after 'float:' is not a number") from None
        return float_tokens(tol)
    suffix = Path(name).suffix
    if suffix in PROGRAM_EXTENSIONS:
        path = Path(name) if base_dir is None or Path(name).is_absolute() else base_dir / name
        if not path.is_file():
            raise CheckerError(f"checker program {str(path)!r} does not exist")
        return CheckerProgram(PROGRAM_EXTENSIONS[suffix], path.read_text(), str(path))
    module, sep, attr = name.replace(":", ".").rpartition(".")
    if not sep or not module:
        raise CheckerError(
            f"checker {name!r} is not exact, tokens, float:TOL, a module.function or a checker program "
            f"({', '.join(sorted(PROGRAM_EXTENSIONS))})"
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise CheckerError(f"checker {name!r} cannot be loaded: {e}") from None
    if not callable(fn):
        raise CheckerError(f"checker {name!r} is not callable")
    return fn  # type: ignore[no-any-return]
