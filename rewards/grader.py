"""`TestCaseGrader`: completions -> programs -> sandbox -> verdicts and rewards that cannot be faked.

- Python function problems (HumanEval, MBPP, call format) run in `rewards/_harness.py`, which keeps
  the candidate's code in one process and the tests in another; its module docstring says what that
  defeats. For the call format the test process only collects the results as plain data, and the
  comparison with `expected` happens here, so expected values never enter the sandbox.
- stdio problems, in any sandbox language, are compiled once per completion and run on every input
  (`run_cases`); their outputs are compared here by the problem's checker.

A failure of the grader itself (the sandbox, the harness, a test that cannot run, an unknown
language) is the verdict `sandbox_error`, never a wrong answer.
"""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards._harness import untag
from rewards.checkers import CheckerError, CheckerProgram, CheckFn, resolve_checker
from rewards.extract import ALIASES, BlockPolicy, Mode, extract_code, fenced_blocks, function_program
from rewards.grades import Failure, Grade, RewardConfig, shape_reward
from rewards.problems import Problem, TestCase
from sandbox import LANGUAGES, Limits, RunRequest, RunResult, Status

HARNESS = (Path(__file__).parent / "_harness.py").read_text()
HARNESS_MODULE = "grpo_coder_harness"
# A job's main.py when the sandbox has the harness preloaded: nothing to compile but these two lines.
HARNESS_MAIN = f"import {HARNESS_MODULE}\n{HARNESS_MODULE}.main()\n"
SHOW = 1000  # characters of input, expected and output kept in a Failure


@dataclass
class _Job:
    """One completion on its way through the grader."""

    problem: Problem
    completion: str
    length: int | None
    grade: Grade | None = None  # decided without running anything
    request: RunRequest | None = None  # Python function formats: a harness run
    nonce: str = ""
    stdio: tuple[str, str, list[TestCase], Limits] | None = None  # language, code, tests, limits
    tests: list[TestCase] = field(default_factory=list)


class TestCaseGrader:
    """Grades completions against a problem's test cases in the sandbox.

    Args:
        sandbox: a `LocalSandbox` or `DockerSandbox` to use; by default one is made from `backend`
            and `workers` and closed by `close()`.
        reward: a `RewardConfig` (or its fields as a dict, as Hydra passes them).
        split: which tests of stdio/call problems to run: `public` (the reward), `hidden` (evaluation;
            problems without hidden tests use their public ones) or `all`.
        mode: HumanEval completion mode: `auto`, `completion` or `function` (see `rewards.extract`).
        block: which fenced block to take: `last`, `first` or `longest`.
        time_limit_s, memory_mb: defaults for problems whose rows do not set them; for function
            formats the time limit covers all of a completion's tests, for stdio each test case.
        stop_on_failure: stop a completion's tests at its first failure (faster for a binary reward;
            tests_passed then counts only up to there).
    """

    def __init__(
        self,
        sandbox: Any = None,
        *,
        backend: str = "local",
        workers: int | None = None,
        reward: RewardConfig | dict[str, Any] | None = None,
        split: str = "public",
        mode: Mode = "auto",
        block: BlockPolicy = "last",
        time_limit_s: float = 3.0,
        memory_mb: int = 512,
        stop_on_failure: bool = False,
    ) -> None:
        if split not in ("public", "hidden", "all"):
            raise ValueError(f"split {split!r} is not one of public, hidden, all")
        if mode not in ("auto", "completion", "function"):
            raise ValueError(f"mode {mode!r} is not one of auto, completion, function")
        if block not in ("last", "first", "longest"):
            raise ValueError(f"block {block!r} is not one of last, first, longest")
        self.reward = reward if isinstance(reward, RewardConfig) else RewardConfig(**(reward or {}))
        self.split, self.mode, self.block = split, mode, block
        self.time_limit_s, self.memory_mb, self.stop_on_failure = time_limit_s, memory_mb, stop_on_failure
        self._own_sandbox = sandbox is None
        self.sandbox = sandbox if sandbox is not None else make_sandbox(backend, workers, harness=True)
        preloaded = getattr(self.sandbox, "preload", {}).get(HARNESS_MODULE) == HARNESS
        self._main = HARNESS_MAIN if preloaded else HARNESS
        self.workers = getattr(self.sandbox, "num_workers", workers or 2)
        self._checkers: dict[str, CheckFn | CheckerProgram] = {}

    # -- the protocol -------------------------------------------------------------------------------
    def grade(
        self, problem: Problem, completions: Sequence[str], lengths: Sequence[int] | None = None
    ) -> list[Grade]:
        """One grade per completion of `problem`; `lengths` (token counts) feed the overlong penalty."""
        return self.grade_batch([problem] * len(completions), completions, lengths)

    def grade_batch(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        lengths: Sequence[int] | None = None,
    ) -> list[Grade]:
        """Grades for (problem, completion) pairs, all run at once on every sandbox slot."""
        if len(problems) != len(completions) or (lengths is not None and len(lengths) != len(completions)):
            raise ValueError("problems, completions (and lengths) must have the same length")
        jobs = [
            self._job(p, c, None if lengths is None else lengths[i])
            for i, (p, c) in enumerate(zip(problems, completions, strict=True))
        ]
        harness = [j for j in jobs if j.request is not None]
        if harness:
            results = self.sandbox.run_many([j.request for j in harness])
            for job, result in zip(harness, results, strict=True):
                job.grade = self._harness_grade(job, result)
        stdio = [j for j in jobs if j.stdio is not None]
        if stdio:
            with ThreadPoolExecutor(max(1, self.workers)) as pool:
                for job, grade in zip(stdio, pool.map(self._stdio_grade, stdio), strict=True):
                    job.grade = grade
        grades = []
        for job in jobs:
            assert job.grade is not None
            grades.append(job.grade)
        return grades

    def close(self) -> None:
        if self._own_sandbox:
            self.sandbox.close()

    def __enter__(self) -> TestCaseGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building jobs ---------------------------------------------------------------------------------
    def _job(self, problem: Problem, completion: str, length: int | None) -> _Job:
        job = _Job(problem, completion, length)
        completion = _valid_text(completion)
        fmt, language = problem.format, problem.language
        if language not in LANGUAGES:
            job.grade = self._error(job, f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
            return job
        if fmt == "math":
            job.grade = self._error(
                job, "math problems are graded by rewards.MathGrader, not by running code"
            )
            return job
        if fmt != "stdio" and language != "python":
            job.grade = self._error(job, f"{fmt} problems are graded in Python only, not {language!r}")
            return job
        time_limit = problem.time_limit_s or self.time_limit_s
        limits = Limits(time_limit_s=time_limit, memory_mb=problem.memory_mb or self.memory_mb)
        if fmt == "stdio":
            code = extract_code(completion, language, block=self.block)
            if code is None:
                job.grade = self._no_code(job)
                return job
            job.tests = list(self._tests(problem))
            if not job.tests:
                job.grade = self._error(job, f"problem {problem.task_id!r} has no {self.split} tests")
                return job
            job.stdio = (language, code, job.tests, limits)
            return job
        if fmt == "mbpp":
            program = extract_code(completion, "python", block=self.block)
        else:  # humaneval and call: the prompt may be code that the completion continues
            prompt = problem.prompt if fmt == "humaneval" or "def " in problem.prompt else ""
            program = function_program(
                prompt, completion, problem.entry_point, mode=self.mode, block=self.block
            )
        if program is None:
            job.grade = self._no_code(job)
            return job
        job.nonce = secrets.token_hex(16)
        spec: dict[str, Any] = {
            "nonce": job.nonce,
            "format": fmt,
            "prompt": problem.prompt if fmt == "humaneval" else "",
            "test": problem.test,
            "entry_point": problem.entry_point,
            "stop_on_failure": self.stop_on_failure,
        }
        if fmt == "call":
            job.tests = list(self._tests(problem))
            if not job.tests:
                job.grade = self._error(job, f"problem {problem.task_id!r} has no {self.split} tests")
                return job
            spec["cases"] = [[list(t.args or ()), {}] for t in job.tests]
        job.request = RunRequest(
            "python", self._main, stdin=json.dumps(spec), limits=limits, files={"candidate.py": program}
        )
        return job

    def _tests(self, problem: Problem) -> tuple[TestCase, ...]:
        if self.split == "public":
            return problem.tests
        if self.split == "hidden":
            return problem.hidden_tests or problem.tests
        return problem.tests + problem.hidden_tests

    # -- verdicts ----------------------------------------------------------------------------------------
    def _harness_grade(self, job: _Job, result: RunResult) -> Grade:
        if result.status is Status.SANDBOX_ERROR:
            return self._error(job, f"the sandbox failed: {result.stderr[-2000:]}")
        lines = _harness_lines(result.stdout, job.nonce)
        head = next((ln for ln in lines if "total" in ln or "defined" in ln), None)
        error = next((ln["harness_error"] for ln in lines if "harness_error" in ln), None)
        done = any(ln.get("done") for ln in lines)
        if error is not None:
            return self._error(job, f"the tests could not run: {error}")
        if head is not None and head.get("defined") is False:
            kind = _gone_kind(head["msg"]) if head["kind"] == "gone" else head["kind"]
            undefined = Failure(message=_gone_text(head["msg"]) if head["kind"] == "gone" else head["msg"])
            return self._grade(job, kind, 0, 0, undefined, result)
        total = int(head["total"]) if head is not None else 0
        outcomes = [ln for ln in lines if "ok" in ln]
        passed, kind = 0, None
        failure: Failure | None = None
        for ln in outcomes:
            ok = ln["ok"]
            if ok is None:  # call format: compare here
                test = job.tests[ln["i"]]
                got = _plain(untag(ln["got"]))
                ok = _equal(got, test.expected, job.problem.checker)
                if not ok:
                    ln = {**ln, "kind": "wrong_answer", "got": repr(got), "expected": repr(test.expected)}
            if ok:
                passed += 1
            elif failure is None:
                kind = _gone_kind(ln["msg"]) if ln.get("kind") == "gone" else ln.get("kind", "wrong_answer")
                message = _gone_text(ln["msg"]) if ln.get("kind") == "gone" else str(ln.get("msg", ""))
                failure = _failure(ln.get("input"), ln.get("expected"), ln.get("got"), message)
        if result.status in (Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT):
            return self._grade(job, result.status.value, passed, total, failure, result)
        if not done:
            if result.exit_code is not None and result.exit_code < 0:
                message = f"the test process was killed by signal {-result.exit_code}"
                return self._grade(
                    job, "runtime_error", passed, total, failure or Failure(message=message), result
                )
            return self._error(
                job, f"the harness ended without a verdict ({result.status.value}): {result.stderr[-2000:]}"
            )
        if total == 0:
            return self._error(job, f"problem {job.problem.task_id!r}: its test calls the candidate nowhere")
        if failure is None and passed == total:
            return self._grade(job, "passed", passed, total, None, result)
        return self._grade(job, kind or "wrong_answer", passed, total, failure, result)

    def _stdio_grade(self, job: _Job) -> Grade:
        assert job.stdio is not None
        language, code, tests, limits = job.stdio
        try:
            checker = self._checker(job.problem.checker)
        except CheckerError as e:
            return self._error(job, str(e))
        program = self.sandbox.run_cases(language, code, [t.input or "" for t in tests], limits)
        if program.compile is not None and program.compile.status is Status.COMPILE_ERROR:
            return self._grade(
                job,
                "compile_error",
                0,
                len(tests),
                Failure(message=program.compile.stderr[-SHOW:]),
                program.compile,
            )
        passed, verdict, failure, time_s = 0, None, None, 0.0
        for test, result in zip(tests, program.results, strict=True):
            time_s += result.time_s
            if result.status is Status.SANDBOX_ERROR:
                return self._error(job, f"the sandbox failed: {result.stderr[-2000:]}")
            if result.status is Status.OK:
                ok = self._check(checker, test, result.stdout)
                if ok is None:
                    return self._error(job, f"checker {job.problem.checker!r} failed to run")
                if ok:
                    passed += 1
                    continue
                kind = "wrong_answer"
            else:
                kind = result.status.value
            if verdict is None:
                verdict = kind
                message = result.stderr[-SHOW:] if kind != "wrong_answer" else ""
                failure = _failure(test.input, test.output, result.stdout, message)
            if self.stop_on_failure:
                break
        final = "passed" if verdict is None else verdict
        return self._grade(job, final, passed, len(tests), failure, None, time_s=time_s)

    def _check(self, checker: CheckFn | CheckerProgram, test: TestCase, got: str) -> bool | None:
        if not isinstance(checker, CheckerProgram):
            return bool(checker(test.input or "", test.output or "", got))
        files = {"input.txt": test.input or "", "expected.txt": test.output or "", "output.txt": got}
        result = self.sandbox.run(RunRequest(checker.language, checker.code, files=files))
        if result.status is Status.OK:
            return True
        if result.status is Status.RUNTIME_ERROR and result.exit_code is not None and result.exit_code > 0:
            return False
        return None

    def _checker(self, name: str) -> CheckFn | CheckerProgram:
        if name not in self._checkers:
            self._checkers[name] = resolve_checker(name)
        return self._checkers[name]

    def _grade(
        self,
        job: _Job,
        verdict: str,
        passed: int,
        total: int,
        failure: Failure | None,
        result: RunResult | None,
        *,
        time_s: float | None = None,
    ) -> Grade:
        reward = shape_reward(
            verdict, passed, total, self.reward, well_formatted=self._well_formatted(job), length=job.length
        )
        return Grade(
            passed=verdict == "passed",
            reward=reward,
            verdict=verdict,
            tests_passed=passed,
            tests_total=total,
            failure=failure,
            time_s=time_s if time_s is not None else (result.time_s if result is not None else 0.0),
        )

    def _well_formatted(self, job: _Job) -> bool:
        aliases = ALIASES.get(job.problem.language, (job.problem.language,))
        return any(b.tag in aliases and b.code.strip() for b in fenced_blocks(job.completion))

    def _no_code(self, job: _Job) -> Grade:
        return self._grade(job, "no_code", 0, 0, Failure(message="the completion holds no code"), None)

    def _error(self, job: _Job, message: str) -> Grade:
        return Grade(False, 0.0, "sandbox_error", 0, 0, Failure(message=message))


def make_sandbox(backend: str, workers: int | None, *, harness: bool = True) -> Any:
    """A sandbox for `backend` (`local` or `docker`), by default with the test harness preloaded."""
    preload = {HARNESS_MODULE: HARNESS} if harness else None
    if backend == "local":
        from sandbox import LocalSandbox

        return LocalSandbox(workers=workers, preload=preload)
    if backend == "docker":
        from sandbox.docker import DockerSandbox

        return DockerSandbox(workers=workers, preload=preload)
    raise ValueError(f"sandbox backend {backend!r} is not one of local, docker")


def _harness_lines(stdout: str, nonce: str) -> list[dict[str, Any]]:
    lines = []
    for line in stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("n") == nonce:
            lines.append(obj)
    return lines


def _gone_kind(msg: str) -> str:
    """How the candidate process ended: over its CPU time is a timeout, anything else a runtime error."""
    return "timeout" if msg in (f"signal:{int(signal.SIGXCPU)}",) else "runtime_error"


def _gone_text(msg: str) -> str:
    how, _, value = msg.partition(":")
    if how == "limit":
        return "the program's result was over the harness's size limit"
    if how == "signal":
        return f"the program was killed by signal {value} during the tests"
    return f"the program exited (status {value}) before its tests finished"


def _failure(inp: Any, expected: Any, got: Any, message: str) -> Failure:
    texts = [None if v is None else str(v) for v in (inp, expected, got)]
    truncated = any(t is not None and len(t) > SHOW for t in texts)
    short = [None if t is None else t[:SHOW] for t in texts]
    return Failure(short[0], short[1], short[2], message[:SHOW], truncated)


def _plain(x: Any) -> Any:
    """A call-format result as JSON would hold it: tuples become lists."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _equal(got: Any, expected: Any, checker: str) -> bool:
    if checker.startswith("float:"):
        tol = float(checker.split(":", 1)[1])
        return _close(got, expected, tol)
    return type(got) is type(expected) and got == expected if isinstance(expected, bool) else got == expected


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= tol or abs(a - b) <= tol * abs(b)
    return bool(a == b)


def _valid_text(text: str) -> str:
    """Lone surrogates (invalid UTF-8 read with surrogateescape, or bad JSON escapes) become U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8")
