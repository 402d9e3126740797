"""The reward-model accuracy report: each metric against a hand count or a brute-force definition."""

import math
import random

import pytest

from rewards.rm_eval import (
    OneClassError,
    Scored,
    against_public_tests,
    best_of_n,
    format_report,
    pairwise_accuracy,
    reliability,
    rm_report,
    roc_auc,
    save_plots,
)


def random_samples(seed, problems=30, per=8):
    rng = random.Random(seed)
    out = []
    for p in range(problems):
        skill = rng.random()
        for _ in range(per):
            passed = rng.random() < skill
            score = round(rng.gauss(1.0 if passed else -1.0, 1.5), 1)  # rounded: ties happen
            out.append(Scored(f"p{p}", score, passed, public_passed=passed or rng.random() < 0.3))
    return out


def test_roc_auc_is_the_pair_statistic_with_ties():
    samples = random_samples(0)
    pos = [s.score for s in samples if s.passed]
    neg = [s.score for s in samples if not s.passed]
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
    assert roc_auc([s.score for s in samples], [s.passed for s in samples]) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([1, 1], [False, True]) == 0.5


def test_one_class_is_a_clear_error_not_nan():
    with pytest.raises(OneClassError, match="needs passing and failing completions, but all 3 passed"):
        roc_auc([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(OneClassError, match="but all 2 failed"):
        rm_report([Scored("a", 0.0, False), Scored("a", 1.0, False)])


def test_pairwise_accuracy_counts_pairs_and_skipped_problems():
    samples = [
        Scored("a", 2.0, True), Scored("a", 1.0, False), Scored("a", 3.0, False),  # 1 of 2 pairs right
        Scored("b", 0.5, True), Scored("b", 0.5, False),  # a tie: one half
        Scored("c", 9.0, True),  # one completion
        Scored("d", 1.0, True), Scored("d", 2.0, True),  # all pass
    ]  # fmt: skip
    result = pairwise_accuracy(samples)
    assert result["accuracy"] == pytest.approx(1.5 / 3)
    assert (result["pairs"], result["problems"]) == (3, 2)
    assert (result["skipped_fewer_than_two"], result["skipped_one_class"]) == (1, 1)


def test_best_of_n_bounds():
    samples = random_samples(1)
    perfect = [Scored(s.task_id, float(s.passed), s.passed) for s in samples]
    constant = [Scored(s.task_id, 0.0, s.passed) for s in samples]
    b = best_of_n(perfect, 4)
    assert b["rm"] == pytest.approx(b["oracle"]) and b["problems"] == 30
    c = best_of_n(constant, 4)
    assert c["rm"] == pytest.approx(c["random"])
    real = best_of_n(samples, 4)
    assert real["random"] < real["rm"] <= real["oracle"]
    assert best_of_n(samples[:5], 8) == {"n": 8, "problems": 0, "skipped": 1, "rm": None, "random": None,
                                         "oracle": None}  # fmt: skip


def test_reliability_of_a_calibrated_model_is_near_zero():
    logit = math.log(0.25 / 0.75)
    samples = [Scored("a", logit, i % 4 == 0) for i in range(400)]
    samples += [Scored("b", -logit, i % 4 != 0) for i in range(400)]
    result = reliability(samples, bins=10)
    assert result["ece"] == pytest.approx(0.0, abs=1e-9)
    filled = [b for b in result["bins"] if b["count"]]
    assert [(b["lo"], b["count"]) for b in filled] == [(0.2, 400), (0.7, 400)]
    overconfident = [Scored("a", 5.0, i % 2 == 0) for i in range(100)]
    assert reliability(overconfident)["ece"] == pytest.approx(sigmoid_5() - 0.5)


def sigmoid_5():
    return 1 / (1 + math.exp(-5.0))


def test_against_public_tests():
    samples = [
        Scored("a", 2.0, True, True), Scored("a", 2.0, False, True),  # a public false pass, rm says pass
        Scored("a", -2.0, False, True),  # a public false pass, rm says fail
        Scored("b", -1.0, False, False), Scored("b", 1.0, True, True),
    ]  # fmt: skip
    result = against_public_tests(samples)
    assert result["rm_agrees_with_hidden"] == pytest.approx(4 / 5)
    assert result["public_agrees_with_hidden"] == pytest.approx(3 / 5)
    assert result["rm_agrees_with_public"] == pytest.approx(4 / 5)
    assert result["public_false_passes"] == 2
    assert result["rm_pairwise_among_public_passes"] == pytest.approx(0.75)  # a: (T2 vs F2 tie, T2 vs F-2)
    assert against_public_tests([Scored("a", 1.0, True)]) is None


def test_report_table_and_plots(tmp_path):
    report = rm_report(random_samples(2), ns=(4, 8))
    text = format_report(report)
    assert text.splitlines()[0] == "reward model on 240 completions of 30 problems " + (
        f"(hidden pass rate {report['pass_rate']:.3f})"
    )
    assert f"pairwise accuracy   {report['pairwise']['accuracy']:.3f}" in text
    assert "best-of-8 " in text and "public tests" in text
    paths = save_plots(report, tmp_path)
    assert [p.name for p in paths] == ["calibration.png", "best_of_n.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
