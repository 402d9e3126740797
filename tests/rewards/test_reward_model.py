"""Reward-model training: label parsing and pairing, and that each objective learns to rank passing
completions of held-out problems above failing ones (the real `tiny` backbone, a real Trainer)."""

import pytest

from rewards import chains
from rewards.reward_model import (
    LabelError,
    Labelled,
    RewardModelScorer,
    check_classes,
    parse_labels,
    preference_pairs,
    train_reward_model,
)
from rewards.rm_eval import Scored, rm_report

PASSING = (lambda body: body, lambda body: body.replace("    return x", "    # done\n    return x"))
FAILING = (
    lambda body: body.replace("return x", "return x + 1"),
    lambda body: body.replace("return x", "return -x"),
)


def labelled(split, n, seed):
    rows = []
    for r in chains.generate(split, n, seed):
        for k, make in enumerate(PASSING + FAILING):
            passed = k < len(PASSING)
            rows.append(
                Labelled(r["task_id"], r["prompt"], make(r["canonical_solution"]), passed, float(passed))
            )
    return rows


def test_bad_labels_are_named():
    good = {"task_id": "t", "prompt": "p", "completion": "c", "passed": True, "pass_fraction": 1.0}
    with pytest.raises(LabelError, match=r"labels row 1 lacks pass_fraction \(fields: completion, passed"):
        parse_labels([good, {k: v for k, v in good.items() if k != "pass_fraction"}])
    with pytest.raises(LabelError, match=r"row 0 .* sandbox_error: the grader failed"):
        parse_labels([{**good, "verdict": "sandbox_error"}])
    with pytest.raises(LabelError, match="has no rows"):
        parse_labels([])
    rows = parse_labels([good, {**good, "completion": "d"}])
    with pytest.raises(LabelError, match="all 2 labelled completions pass: a bce reward model needs both"):
        check_classes(rows, "bce")
    check_classes(rows, "regression")  # a pass fraction is still a target


def test_preference_pairs_within_problems():
    rows = [Labelled("a", "", "1", True, 1.0), Labelled("a", "", "2", False, 0.25),
            Labelled("a", "", "3", False, 0.5), Labelled("b", "", "4", True, 1.0),
            Labelled("c", "", "5", False, 0.0), Labelled("c", "", "6", False, 0.0)]  # fmt: skip
    pairs, stats = preference_pairs(rows, margin_scale=2.0)
    assert sorted((g.completion, b.completion, m) for g, b, m in pairs) == [("1", "2", 1.5), ("1", "3", 1.0)]
    assert (stats.pairs, stats.problems, stats.skipped_fewer_than_two, stats.skipped_one_class) == (
        2,
        1,
        1,
        1,
    )
    capped, _ = preference_pairs(labelled("train", 3, 0), max_pairs_per_problem=3)
    assert len(capped) == 9


@pytest.mark.parametrize("objective", ["bce", "bradley_terry"])
def test_reward_model_ranks_held_out_completions(objective, tmp_path):
    result = train_reward_model(
        _tiny_path(), labelled("train", 120, 0), tmp_path, objective=objective,
        max_length=256, trainer_args={"max_steps": 60, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
                                      "warmup_steps": 5, "disable_tqdm": True},
    )  # fmt: skip
    assert result.steps == 60
    held = labelled("heldout", 30, 0)
    scores = RewardModelScorer(result.model_dir).score([r.prompt for r in held], [r.completion for r in held])
    report = rm_report([Scored(r.task_id, s, r.passed) for r, s in zip(held, scores, strict=True)], ns=(4,))
    print(f"{objective}: pairwise accuracy {report['pairwise']['accuracy']:.3f}, AUC {report['roc_auc']:.3f}")
    assert report["pairwise"]["accuracy"] > 0.8
    assert report["best_of_n"][0]["rm"] > report["best_of_n"][0]["random"]


def _tiny_path():
    from grpo.models import resolve_model_path

    return str(resolve_model_path("tiny"))
