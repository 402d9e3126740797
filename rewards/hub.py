"""Problem rows from public code-RL datasets on the HF hub, in the formats of DESIGN.md §3.1.

APPS and TACO share one schema: `question`, `starter_code`, `difficulty`, and `input_output`, a JSON
string `{"inputs": [...], "outputs": [...], "fn_name"?: str}`. With `fn_name` a problem is a function
call (call format: each input is the argument list, each output the return value, which the datasets
wrap in a one-element list; the prompt asks for a top-level function, since LeetCode starters are
methods of a `Solution` class, and names no `def`, which the grader would take for a code prefix);
without it, a stdin/stdout program (stdio format, compared token by
token). The first `public` test cases become `tests` (the reward), the rest `hidden_tests`.

    rows = apps_rows("codeparrot/apps", split="train", difficulties=["introductory"], limit=2000)

A row without usable tests (no cases, or inputs and outputs of different lengths) is skipped and
counted, not guessed at.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

INSTRUCTION = (
    "Solve the following problem in Python. Put the whole program in one ```python block.\n\n{question}\n"
)
CALL_HINT = "\nWrite it as a top-level Python function `{fn_name}({params})`, not as a method.\n"
STDIO_HINT = "\nRead the input from standard input and print the answer to standard output.\n"


class HubRowError(ValueError):
    pass


def apps_problem(row: Mapping[str, Any], *, public: int = 3, source: str = "apps") -> dict[str, Any]:
    """One APPS/TACO row as a call- or stdio-format problem row; `HubRowError` when it has no usable tests."""
    name = f"{source}/{row.get('problem_id', '?')}"
    try:
        io = json.loads(row.get("input_output") or "{}")
    except json.JSONDecodeError as e:
        raise HubRowError(f"{name}: input_output is not JSON ({e})") from None
    inputs, outputs = io.get("inputs") or [], io.get("outputs") or []
    if not inputs or len(inputs) != len(outputs):
        raise HubRowError(f"{name}: {len(inputs)} test inputs for {len(outputs)} outputs")
    fn_name = io.get("fn_name")
    prompt = INSTRUCTION.format(question=str(row.get("question", "")).strip())
    base: dict[str, Any] = {"task_id": name, "difficulty": row.get("difficulty")}
    if fn_name:
        cases = [{"args": list(i) if isinstance(i, list) else [i], "expected": _unwrap(o)}
                 for i, o in zip(inputs, outputs, strict=True)]  # fmt: skip
        hint = CALL_HINT.format(fn_name=fn_name, params=_params(str(row.get("starter_code") or ""), fn_name))
        row_out = base | {"prompt": prompt + hint, "entry_point": fn_name}
    else:
        cases = [{"input": _text(i), "output": _text(o)} for i, o in zip(inputs, outputs, strict=True)]
        row_out = base | {"prompt": prompt + STDIO_HINT, "checker": "tokens"}
    return row_out | {"tests": cases[:public], "hidden_tests": cases[public:]}


def convert(rows: Iterable[Mapping[str, Any]], *, public: int = 3, source: str = "apps",
            difficulties: Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Problem rows from dataset rows, skipping (and counting on stderr) those without usable tests."""
    out: list[dict[str, Any]] = []
    skipped = 0
    for row in rows:
        if difficulties and row.get("difficulty") not in difficulties:
            continue
        try:
            out.append(apps_problem(row, public=public, source=source))
        except HubRowError:
            skipped += 1
        if limit is not None and len(out) >= limit:
            break
    if skipped:
        print(f"{source}: skipped {skipped} rows without usable tests", file=sys.stderr)
    return out


def apps_rows(name: str = "codeparrot/apps", *, split: str = "train", difficulties: Sequence[str] | None = None,
              limit: int | None = None, public: int = 3) -> list[dict[str, Any]]:  # fmt: skip
    """Problem rows from an APPS-schema dataset on the hub (or in the local HF cache): APPS or TACO."""
    from datasets import load_dataset

    dataset = load_dataset(name, split=split)
    return convert(
        dataset, public=public, source=name.split("/")[-1].lower(), difficulties=difficulties, limit=limit
    )


def _params(starter: str, fn_name: str) -> str:
    """The parameters of `fn_name` in the starter code, without `self` (LeetCode starters are methods)."""
    match = re.search(rf"def\s+{re.escape(fn_name)}\s*\(([^)]*)\)", starter)
    if not match:
        return "..."
    params = [p.strip() for p in match.group(1).split(",") if p.strip() and p.strip() != "self"]
    return ", ".join(params)


def _unwrap(output: Any) -> Any:
    return output[0] if isinstance(output, list) and len(output) == 1 else output


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(map(str, value)) + "\n"
    return str(value)
