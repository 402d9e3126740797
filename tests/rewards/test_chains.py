"""The generated chain problems: reference solutions pass their hidden tests in the real sandbox, wrong
ones fail, and the splits keep the held-out compositions out of training."""

import itertools
import json
import random
import re
from collections import Counter

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


def test_length_weights_set_the_odds_of_each_chain_length():
    def lengths(rows):
        return Counter(r["canonical_solution"].count("\n") - 1 for r in rows)

    # the default draws exactly the rows of the odds hard-coded before length_weights existed
    assert chains.generate("train", 50, seed=0) == chains.generate(
        "train", 50, seed=0, length_weights=[1, 2, 2]
    )
    assert set(lengths(chains.generate("train", 200, seed=0, length_weights=[1, 2, 0]))) == {1, 2}
    few_long = lengths(chains.generate("train", 500, seed=0, length_weights=[1, 2, 0.1]))
    assert 0 < few_long[3] < 50 < few_long[2]
    rows = chains.sft_rows("train", 100, seed=0, length_weights=[0, 0, 1])
    assert {r["response"].count("\n") - 1 for r in rows} == {3}


def test_constants_set_the_values_steps_draw_from():
    def used(rows, key):
        return {int(k) for r in rows for k in re.findall(r"[-+*%/,] (\d+)", r[key])}

    assert chains.generate("train", 50, seed=0) == chains.generate(
        "train", 50, seed=0, constants=range(2, 10)
    )
    assert used(chains.generate("train", 300, seed=0), "canonical_solution") == set(range(2, 10))
    assert used(chains.sft_rows("train", 300, seed=0, constants=[2, 3, 4, 5]), "response") == {2, 3, 4, 5}


def test_pair_share_keeps_labelled_rows_to_a_nested_share_of_the_pairs():
    def pairs(rows):
        return {
            pair
            for r in rows
            for pair in itertools.pairwise(
                chains._kind(line) for line in chains._steps(r["canonical_solution"])
            )
        }

    training_pairs = pairs(chains.generate("train", 2000, seed=0))
    assert len(training_pairs) == 81  # the 90 ordered pairs of distinct kinds less the 9 held out
    half = pairs(chains.generate("train", 500, seed=0, pair_share=0.5))
    assert half <= {p for p in training_pairs if chains.pair_in_share(p, 0.5)}
    assert 30 < len(half) < 50
    assert {p for p in training_pairs if chains.pair_in_share(p, 0.3)} < half  # shares are nested
    assert len(chains.sft_rows("train", 100, seed=0, pair_share=0.5)) == 100


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split 'test' is not one of train, validation, heldout"):
        chains.generate("test", 3)
    with pytest.raises(ValueError, match="format 'mbpp'"):
        chains.generate("train", 3, fmt="mbpp")
    for weights in ([1, 2], [1, -1, 2], [0, 0, 0]):
        with pytest.raises(ValueError, match=r"length_weights must be 3 odds.*got \["):
            chains.generate("train", 3, length_weights=weights)
    for ks in ([], [1, 5], [2, 2.5], ["3"]):
        with pytest.raises(ValueError, match=r"constants must be a non-empty list of integers >= 2 \(got \["):
            chains.generate("train", 3, constants=ks)
    for share in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"pair_share must be in \(0, 1\]"):
            chains.generate("train", 3, pair_share=share)


def test_failures_are_diagnosed_line_by_line_and_counted_by_held_out_pair(tmp_path, capsys):
    rows = chains.generate("heldout", 40, seed=0)
    row = next(  # three steps, the middle one with a constant
        r
        for r in rows
        if len(steps := chains._steps(r["canonical_solution"])) == 3
        and chains.PRIMITIVES[chains._kind(steps[1])].takes_k
    )
    ref = chains._steps(row["canonical_solution"])
    body = "".join(f"    {line}\n" for line in ref) + "    return x\n"
    assert chains.diagnose(row, body) == "as_reference"
    kind = chains._kind(ref[1])
    other = next(k for k in chains.PRIMITIVES if k != kind and chains.PRIMITIVES[k].takes_k)
    changed = chains.PRIMITIVES[other].code.format(k=7)
    assert chains.diagnose(row, body.replace(ref[1], changed, 1)) == "wrong_operation"
    wrong_k = chains.PRIMITIVES[kind].code.format(k=11)
    assert chains.diagnose(row, body.replace(ref[1], wrong_k, 1)) == "wrong_constant"
    assert chains.diagnose(row, body.replace(f"    {ref[1]}\n", "", 1)) == "missing_step"
    assert chains.diagnose(row, f"    x = x + 1\n{body}") == "extra_step"
    assert all(pair in chains.HELDOUT_PAIRS for r in rows for pair in chains.heldout_pairs(r))
    assert all(chains.heldout_pairs(r) for r in rows)  # every held-out chain has one

    # The report: the references pass, one completion with a step missing fails.
    results = [{"task_id": r["task_id"], "passed": 1, "completion": r["canonical_solution"]} for r in rows]
    results[0] = {"task_id": rows[0]["task_id"], "passed": 0, "completion": "    return x\n"}
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in results))
    chains.main(["--split", "heldout", "--n", "40", "--explain", str(path)])
    report = capsys.readouterr().out.splitlines()
    assert report[0] == "1 of 40 failed: missing_step 1"
    a, b = chains.heldout_pairs(rows[0])[0]
    assert f"{a}>{b} 1/" in report[1]
    with pytest.raises(ValueError, match="not one of the chain problems"):
        chains.explain([{"task_id": "chains/heldout/9/0", "passed": 0, "completion": ""}], rows)
