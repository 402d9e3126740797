"""`MathGrader`: final-answer checking for math problems (rows with `task_id, prompt, answer`).

The final answer is the last `\\boxed{...}` (nested braces allowed), else what follows "answer is" or
"Answer:", else the last number in the completion. It is checked against the row's `answer` for
numeric or symbolic equivalence by math-verify (which parses LaTeX into sympy), or, when math-verify
is not importable, by sympy's simplification of the difference, or, without sympy, as strings.
math-verify's timeouts use SIGALRM, which works only in the main thread: elsewhere they are off.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from rewards.grades import Failure, Grade, RewardConfig, shape_reward

NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
ANSWER_IS = re.compile(r"(?:answer is|answer:|Answer:)\s*\$?([^\n$]+)", re.I)


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...}, braces matched."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1].strip() if depth == 0 else None


def final_answer(completion: str) -> str | None:
    found = boxed(completion)
    if found is not None:
        return found
    m = ANSWER_IS.findall(completion)
    if m:
        return str(m[-1]).strip().rstrip(".")
    numbers = NUMBER.findall(completion)
    return numbers[-1].replace(",", "") if numbers else None


def equivalent(answer: str, gold: str) -> bool:
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        from math_verify import parse, verify
    except ImportError:
        return _sympy_equal(answer, gold)
    g, a = parse(f"${gold}$", parsing_timeout=timeout), parse(f"${answer}$", parsing_timeout=timeout)
    if not g or not a:
        return answer.strip() == gold.strip()
    return bool(verify(g, a, timeout_seconds=timeout))


def _sympy_equal(answer: str, gold: str) -> bool:
    try:
        import sympy

        return bool(sympy.simplify(sympy.sympify(answer) - sympy.sympify(gold)) == 0)
    except Exception:
        return answer.strip() == gold.strip()


class MathGrader:
    """Grades completions of math problems by their final answer; `reward` shapes as TestCaseGrader's."""

    def __init__(self, reward: RewardConfig | dict[str, Any] | None = None) -> None:
        self.reward = reward if isinstance(reward, RewardConfig) else RewardConfig(**(reward or {}))

    def grade(
        self, problem: Any, completions: Sequence[str], lengths: Sequence[int] | None = None
    ) -> list[Grade]:
        gold = getattr(problem, "answer", None)
        if gold is None:
            message = f"problem {problem.task_id!r} has no answer: MathGrader needs rows with an `answer`"
            return [Grade(False, 0.0, "sandbox_error", 0, 0, Failure(message=message)) for _ in completions]
        grades = []
        for i, completion in enumerate(completions):
            answer = final_answer(completion)
            if answer is None:
                verdict = "no_code"
            else:
                verdict = "passed" if equivalent(answer, str(gold)) else "wrong_answer"
            length = None if lengths is None else lengths[i]
            reward = shape_reward(verdict, int(verdict == "passed"), 1, self.reward, length=length)
            failure = (
                None if verdict == "passed" else Failure(expected=str(gold), got=answer, message=verdict)
            )
            grades.append(Grade(verdict == "passed", reward, verdict, int(verdict == "passed"), 1, failure))
        return grades
