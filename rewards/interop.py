"""Our graders as other libraries' reward functions: TRL's `reward_funcs` and verl's `compute_score`.

Both find each sample's problem either by a key column (`task_id` by default) in a table of problems
given up front, or from the sample's own columns when they hold a whole problem row (DESIGN.md
section 3.1). A grader failure (`sandbox_error`) is never passed off as a reward: TRL gets None for
that sample (it leaves it out of the mean, as it does for reward functions that do not apply), verl an
exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rewards.grades import Grade, Grader
from rewards.problems import Problem, parse_problem


def grade_pairs(grader: Grader, problems: Sequence[Problem], completions: Sequence[str]) -> list[Grade]:
    """Grades for (problem, completion) pairs with any grader: one batch if it has `grade_batch`, else
    one `grade` call per problem."""
    batch = getattr(grader, "grade_batch", None)
    if batch is not None:
        return batch(problems, completions)  # type: ignore[no-any-return]
    grades: list[Grade | None] = [None] * len(completions)
    by_problem: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        by_problem.setdefault(id(p), []).append(i)
    for idx in by_problem.values():
        for i, g in zip(idx, grader.grade(problems[idx[0]], [completions[i] for i in idx]), strict=True):
            grades[i] = g
    return [g for g in grades if g is not None]


class _Lookup:
    def __init__(self, problems: Mapping[str, Problem] | Sequence[Problem] | None, key: str) -> None:
        if problems is not None and not isinstance(problems, Mapping):
            problems = {p.task_id: p for p in problems}
        self.problems, self.key = problems, key

    def __call__(self, value: Any, row: Mapping[str, Any] | None = None) -> Problem:
        if self.problems is not None and value is not None:
            if str(value) not in self.problems:
                raise KeyError(f"no problem has {self.key}={value!r}")
            return self.problems[str(value)]
        if row is None:
            raise KeyError(f"the sample has no {self.key!r} and no problem table was given")
        return parse_problem(row)


def as_trl_reward(
    grader: Grader,
    problems: Mapping[str, Problem] | Sequence[Problem] | None = None,
    *,
    key: str = "task_id",
) -> Callable[..., list[float | None]]:
    """A function with TRL's reward-function signature: `f(prompts, completions, **columns)`."""
    lookup = _Lookup(problems, key)

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        rows = [{k: v[i] for k, v in columns.items() if isinstance(v, list)} for i in range(len(completions))]
        for row, prompt in zip(rows, prompts, strict=True):  # TRL passes the prompt column apart
            row.setdefault("prompt", prompt if isinstance(prompt, str) else prompt[-1]["content"])
        batch = [lookup(row.get(key), row) for row in rows]
        texts = [
            c if isinstance(c, str) else c[-1]["content"] for c in completions
        ]  # conversational: last turn
        grades = grade_pairs(grader, batch, texts)
        return [None if g.grader_failed else g.reward for g in grades]

    reward.__name__ = type(grader).__name__  # TRL names the logged reward after the function
    return reward


def as_verl_compute_score(
    grader: Grader, problems: Mapping[str, Problem] | Sequence[Problem] | None = None
) -> Callable[..., dict[str, Any]]:
    """A function with verl's `compute_score(data_source, solution_str, ground_truth, extra_info)`.

    `ground_truth` is a task_id in `problems`, or a problem row (a dict or its JSON). The result is a
    dict whose `score` is the reward; verl logs the other keys.
    """
    lookup = _Lookup(problems, "task_id")

    def compute_score(
        data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None
    ) -> dict[str, Any]:
        if problems is not None:
            problem = lookup(ground_truth)
        else:
            row = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
            problem = lookup(None, row)
        (grade,) = grade_pairs(grader, [problem], [solution_str])
        if grade.grader_failed:
            message = grade.failure.message if grade.failure else ""
            raise RuntimeError(f"grading {problem.task_id!r} failed (sandbox_error): {message}")
        return {
            "score": grade.reward,
            "acc": float(grade.passed),
            "tests_passed": grade.tests_passed,
            "tests_total": grade.tests_total,
        }

    return compute_score
