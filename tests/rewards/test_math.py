"""MathGrader: final-answer extraction and equivalence through math-verify."""

from rewards import MathGrader, load_problems
from rewards.math_grader import boxed, final_answer

ROWS = [
    {"task_id": "m/1", "prompt": "What is 1/2 + 1/4?", "answer": "\\frac{3}{4}"},
    {"task_id": "m/2", "prompt": "Solve x^2 = 4, x > 0.", "answer": "2"},
]


def test_final_answer_forms():
    assert boxed("so \\boxed{\\frac{1}{2}} and then \\boxed{x^{2}+1}") == "x^{2}+1"
    assert final_answer("The answer is 42.") == "42"
    assert final_answer("we get 3 apples, then 1,234 pears") == "1234"
    assert final_answer("no digits here") is None


def test_numeric_and_symbolic_equivalence():
    p1, p2 = load_problems(ROWS)
    grades = MathGrader().grade(
        p1, ["Thus $\\boxed{0.75}$.", "\\boxed{3/4}", "\\boxed{\\dfrac{6}{8}}", "\\boxed{1/2}", "?"]
    )
    assert [g.verdict for g in grades] == ["passed", "passed", "passed", "wrong_answer", "no_code"]
    assert grades[3].failure.expected == "\\frac{3}{4}" and grades[3].failure.got == "1/2"
    assert [
        g.passed for g in MathGrader().grade(p2, ["x = 2", "The answer is -2", "\\boxed{\\sqrt{4}}"])
    ] == [True, False, True]


def test_rows_without_an_answer_are_a_grader_error():
    p = load_problems("humaneval")[0]
    (g,) = MathGrader().grade(p, ["\\boxed{1}"])
    assert g.verdict == "sandbox_error" and "no answer" in g.failure.message


def test_reward_config_shapes_the_reward():
    (p, _) = load_problems(ROWS)
    grader = MathGrader(reward={"format_reward": 0.5, "max_length": 10, "overlong_buffer": 5})
    grades = grader.grade(p, ["\\boxed{3/4}", "\\boxed{3/4}"], lengths=[4, 10])
    assert [g.reward for g in grades] == [1.0, 0.0]  # format_reward is for fenced code; overlong costs 1
