"""Reward-model training: label parsing and pairing, and that each objective learns to rank passing
completions of held-out problems above failing ones (the real `tiny` backbone, a real Trainer)."""

import pytest

from rewards import chains
from rewards.likelihood_rm import LikelihoodRewardModel, build, is_likelihood_model
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


@pytest.mark.parametrize(
    ("head", "objective"), [("value", "bce"), ("value", "bradley_terry"), ("likelihood", "bradley_terry")]
)
def test_reward_model_ranks_held_out_completions(head, objective, tmp_path):
    result = train_reward_model(
        _tiny_path(), labelled("train", 120, 0), tmp_path, objective=objective, head=head,
        max_length=256, trainer_args={"max_steps": 60, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
                                      "warmup_steps": 5, "disable_tqdm": True},
    )  # fmt: skip
    assert result.steps == 60
    assert is_likelihood_model(result.model_dir) == (head == "likelihood")
    held = labelled("heldout", 30, 0)
    scores = RewardModelScorer(result.model_dir).score([r.prompt for r in held], [r.completion for r in held])
    report = rm_report([Scored(r.task_id, s, r.passed) for r, s in zip(held, scores, strict=True)], ns=(4,))
    print(
        f"{head}/{objective}: pairwise accuracy {report['pairwise']['accuracy']:.3f}, AUC {report['roc_auc']:.3f}"
    )
    assert report["pairwise"]["accuracy"] > 0.8
    assert report["best_of_n"][0]["rm"] > report["best_of_n"][0]["random"]


def test_untrained_likelihood_head_scores_the_mean_log_likelihood_of_the_completion(tmp_path):
    """Value head at zero and scale 1: the saved reward model's score is the causal LM's own mean
    log p(completion | prompt), which HF's loss with the prompt's labels masked computes independently."""
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = build(_tiny_path())
    model.save(tmp_path, tokenizer)
    lm = AutoModelForCausalLM.from_pretrained(_tiny_path(), dtype=torch.float32).eval()
    rows = labelled("train", 2, 0)[:3]
    scores = RewardModelScorer(str(tmp_path), batch_size=2).score(
        [r.prompt for r in rows], [r.completion for r in rows]
    )
    for r, got in zip(rows, scores, strict=True):
        p = tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(r.completion, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            loss = lm(input_ids=torch.tensor([p + c]), labels=torch.tensor([[-100] * len(p) + c])).loss
        assert got == pytest.approx(-loss.item(), abs=1e-4)


def test_likelihood_head_saves_and_reloads_its_head(tmp_path):
    import torch

    model, tokenizer = build(_tiny_path())
    with torch.no_grad():
        model.value.weight.normal_()
        model.value.bias.fill_(0.5)
        model.scale.fill_(2.5)
    model.save(tmp_path, tokenizer)
    again, _ = build(tmp_path)
    assert isinstance(again, LikelihoodRewardModel) and is_likelihood_model(tmp_path)
    for name, tensor in model.head_state().items():
        assert torch.equal(again.head_state()[name], tensor), name


def test_likelihood_head_refuses_what_its_loop_does_not_read(tmp_path):
    rows = labelled("train", 2, 0)
    with pytest.raises(LabelError, match=r"head=likelihood .* not: gradient_accumulation_steps"):
        train_reward_model(_tiny_path(), rows, tmp_path, objective="bradley_terry", head="likelihood",
                           trainer_args={"gradient_accumulation_steps": 2})  # fmt: skip
    with pytest.raises(LabelError, match=r"not: lr_scheduler_type=linear"):
        train_reward_model(_tiny_path(), rows, tmp_path, objective="bradley_terry", head="likelihood",
                           trainer_args={"lr_scheduler_type": "linear"})  # fmt: skip
    with pytest.raises(LabelError, match=r"head 'policy' is not one of value, likelihood"):
        train_reward_model(_tiny_path(), rows, tmp_path, head="policy")


def _tiny_path():
    from grpo.models import resolve_model_path

    return str(resolve_model_path("tiny"))
