"""The generated chain problems: reference solutions pass their hidden tests in the real sandbox, wrong
ones fail, and the splits keep the held-out compositions out of training."""

import random

import pytest

from rewards import TestCaseGrader, chains, load_problems


@pytest.mark.parametrize("split", chains.SPLITS)
def test_reference_solutions_pass_and_wrong_ones_fail(grader, split):
    rows = chains.generate(split, 12, seed=3)
    problems = load_problems(rows)
    assert all(p.format == "call" and len(p.tests) == 3 and len(p.hidden_tests) == 10 for p in problems)
    right = [r["canonical_solution"] for r in rows]
    wrong = [r["canonical_solution"].replace("return x", "return x + 1") for r in rows]
    with TestCaseGrader(workers=2, time_limit_s=1.0, split="hidden") as hidden:
        grades = hidden.grade_batch(problems * 2, right + wrong)
    verdicts = [g.verdict for g in grades]
    assert verdicts[:12] == ["passed"] * 12, [g.failure for g in grades[:12]]
    assert verdicts[12:] == ["wrong_answer"] * 12


def test_humaneval_format_loads_and_grades(grader):
    rows = chains.generate("heldout", 6, seed=0, fmt="humaneval")
    problems = load_problems(rows)
    assert {p.format for p in problems} == {"humaneval"}
    grades = grader.grade_batch(problems, [r["canonical_solution"] for r in rows])
    assert [g.verdict for g in grades] == ["passed"] * 6
    assert all(g.tests_total == 13 for g in grades)


def test_splits_partition_the_chains_and_hold_out_pairs():
    rng = random.Random(0)
    seen: dict[str, set] = {s: set() for s in chains.SPLITS}
    for _ in range(5000):
        chain = chains._random_chain(rng)
        split = chains.split_of(chain)
        seen[split].add(chain)
        pairs = set(zip([k for k, _ in chain], [k for k, _ in chain][1:], strict=False))
        assert (split == "heldout") == bool(pairs & chains.HELDOUT_PAIRS)
    assert all(seen.values())
    assert not (seen["train"] & seen["validation"])
    assert 0.05 < len(seen["validation"]) / (len(seen["train"]) + len(seen["validation"])) < 0.15


def test_generation_is_seeded_and_distinct():
    a = chains.generate("train", 50, seed=1)
    assert a == chains.generate("train", 50, seed=1)
    assert a != chains.generate("train", 50, seed=2)
    assert len({r["prompt"].split('"""')[1].split("\n")[0] for r in a}) == 50  # distinct descriptions
    held = {r["prompt"] for r in chains.generate("heldout", 200, seed=0)}
    train = {r["prompt"] for r in chains.generate("train", 500, seed=0)}
    assert not held & train


def test_reference_body_follows_the_description():
    chain = (("add", 3), ("square", 0), ("min", 5))
    assert chains.describe(chain) == (
        "Add 3 to x, then square the result, then take the minimum of the result and 5. Return the result."
    )
    assert chains.solution(chain) == "    x = x + 3\n    x = x * x\n    x = min(x, 5)\n    return x\n"
    assert [chains.evaluate(chain, x) for x in (-3, 0, 1)] == [0, 5, 5]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split 'test' is not one of train, validation, heldout"):
        chains.generate("test", 3)
    with pytest.raises(ValueError, match="format 'mbpp'"):
        chains.generate("train", 3, fmt="mbpp")
