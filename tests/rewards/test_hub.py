"""`rewards.hub`: APPS/TACO rows (their published schema) become call and stdio problems that the
sandbox grades; rows without usable tests are skipped and counted."""

import json

import pytest

from rewards import TestCaseGrader, load_problems
from rewards.hub import HubRowError, apps_problem, convert

CALL_ROW = {  # as APPS publishes a LeetCode-style problem: outputs wrapped in one-element lists
    "problem_id": 7,
    "question": "Return the sum of the two numbers.",
    "starter_code": "class Solution:\n    def add(self, a, b):",
    "input_output": json.dumps({"fn_name": "add", "inputs": [[1, 2], [3, 4], [5, 6], [10, -2]],
                                "outputs": [[3], [7], [11], [8]]}),
    "difficulty": "introductory",
}  # fmt: skip
STDIO_ROW = {
    "problem_id": 8,
    "question": "Read n and print n squared.",
    "starter_code": "",
    "input_output": json.dumps(
        {"inputs": ["3\n", "4\n", "5\n", "12\n"], "outputs": ["9\n", "16\n", "25\n", "144\n"]}
    ),
    "difficulty": "interview",
}


def test_call_and_stdio_rows_convert_with_public_and_hidden_tests():
    call = apps_problem(CALL_ROW, public=3)
    assert call["entry_point"] == "add" and call["task_id"] == "apps/7"
    assert "top-level Python function `add(a, b)`" in call["prompt"] and "def " not in call["prompt"]
    assert call["tests"][0] == {"args": [1, 2], "expected": 3} and len(call["hidden_tests"]) == 1
    stdio = apps_problem(STDIO_ROW, public=2)
    assert stdio["checker"] == "tokens" and "entry_point" not in stdio
    assert stdio["tests"] == [{"input": "3\n", "output": "9\n"}, {"input": "4\n", "output": "16\n"}]
    assert len(stdio["hidden_tests"]) == 2
    with pytest.raises(HubRowError, match=r"apps/9: 2 test inputs for 1 outputs"):
        apps_problem({"problem_id": 9, "input_output": json.dumps({"inputs": ["1", "2"], "outputs": ["1"]})})


def test_converted_rows_are_graded_in_the_sandbox(capsys):
    rows = convert([CALL_ROW, STDIO_ROW, {"problem_id": 10, "input_output": ""}], public=2)
    assert "skipped 1 rows without usable tests" in capsys.readouterr().err
    call, stdio = load_problems(rows)
    with TestCaseGrader(workers=2, split="hidden") as grader:
        right_call = "```python\ndef add(a, b):\n    return a + b\n```"
        wrong_call = "```python\ndef add(a, b):\n    return a - b\n```"
        right_stdio = "```python\nn = int(input())\nprint(n * n)\n```"
        wrong_stdio = "```python\nn = int(input())\nprint(n + n)\n```"
        grades = grader.grade_batch(
            [call, call, stdio, stdio], [right_call, wrong_call, right_stdio, wrong_stdio]
        )
    assert [g.verdict for g in grades] == ["passed", "wrong_answer", "passed", "wrong_answer"]
    assert [g.tests_total for g in grades] == [2, 2, 2, 2]  # the hidden tests only
    assert convert([CALL_ROW, STDIO_ROW], difficulties=["interview"])[0]["task_id"] == "apps/8"
