"""The learner against TRL's GRPOTrainer loss, gradient accumulation, resume, and bad configuration."""

import random

import pytest
import torch

from grpo.learner import Learner, LearnerConfig, RolloutBatch, micro_batch_weight, micro_batches
from grpo.logprobs import token_logprobs
from grpo.models import load_model

VOCAB = 2048


def make_batch(seed=0, groups=3, group_size=4, prompt_len=None, sampling=False):
    rng = random.Random(seed)
    prompts, completions, rewards, lps = [], [], [], []
    for _ in range(groups):
        p = [rng.randrange(3, VOCAB) for _ in range(prompt_len or rng.randrange(4, 12))]
        for _ in range(group_size):
            c = [rng.randrange(3, VOCAB) for _ in range(rng.randrange(1, 24))]
            prompts.append(p)
            completions.append(c)
            rewards.append(float(rng.random() > 0.5) + rng.random() * 0.1)
            lps.append([-rng.random() * 8 for _ in c])
    return RolloutBatch(prompts, completions, rewards, group_size, lps if sampling else None)


def fresh(config):
    torch.manual_seed(0)
    policy, _ = load_model("tiny")
    reference = load_model("tiny")[0] if config.kl_coef > 0 else None
    return Learner(config, policy=policy, reference=reference)


def grads(model):
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


# -- parity with TRL ---------------------------------------------------------------------------------
def trl_loss(learner, prepared, loss_type, beta, epsilon_high, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    (m,) = prepared.micros
    cmax = m.mask.shape[1]
    config = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=len(m.idx), num_generations=4, beta=beta,
        loss_type=loss_type, epsilon=0.2, epsilon_high=epsilon_high, max_completion_length=cmax, use_cpu=True,
        report_to="none", temperature=1.0, bf16=False,
    )  # fmt: skip
    from datasets import Dataset

    trainer = GRPOTrainer(
        model=learner.policy, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=config,
        train_dataset=Dataset.from_dict({"prompt": ["x"]}),
    )  # fmt: skip
    trainer.current_gradient_accumulation_steps = 1
    inputs = {
        "prompt_ids": m.prompt_ids[m.group],
        "prompt_mask": torch.ones_like(m.prompt_ids[m.group]),
        "completion_ids": m.completion_ids,
        "completion_mask": m.mask.long(),
        "advantages": m.advantages,
        "old_per_token_logps": m.old,
        "num_items_in_batch": m.mask.sum(),
    }
    if beta:
        inputs["ref_per_token_logps"] = m.ref
    return trainer._compute_loss(learner.policy, inputs)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("epsilon_high", [None, 0.28])
def test_loss_and_gradients_equal_trls(loss_type, beta, epsilon_high, tmp_path):
    config = LearnerConfig(
        loss_type=loss_type, kl_coef=beta, clip_low=0.2, clip_high=epsilon_high or 0.2, micro_batch_size=12
    )
    learner = fresh(config)
    batch = make_batch(prompt_len=8)  # equal prompt lengths: TRL left-pads prompts, we right-pad them
    prepared = learner.prepare(batch)
    (m,) = prepared.micros
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # old and reference log-probs away from the policy's, so clipping and KL act
        current, _ = learner._logprobs(learner.policy, m, False)
        m.old = (current + 0.3 * torch.randn(current.shape, generator=gen)) * m.mask
        if beta:
            m.ref = (current + 0.5 * torch.randn(current.shape, generator=gen)) * m.mask
    learner.policy.zero_grad(set_to_none=True)
    ours = learner.accumulate(prepared)
    our_grads = grads(learner.policy)
    learner.policy.zero_grad(set_to_none=True)
    theirs = trl_loss(learner, prepared, loss_type, beta, epsilon_high, tmp_path)
    theirs.backward()
    their_grads = grads(learner.policy)
    assert ours["loss"] == pytest.approx(float(theirs), abs=1e-5)
    assert ours["loss/clip_frac"] > 0
    assert our_grads.keys() == their_grads.keys()
    for k in our_grads:
        torch.testing.assert_close(our_grads[k], their_grads[k], atol=1e-5, rtol=1e-4, msg=k)


# -- gradient accumulation ---------------------------------------------------------------------------
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_micro_batches_give_the_whole_batchs_update(loss_type):
    batch = make_batch(seed=3)
    results = []
    for size in (12, 5, 1):
        # adam_eps=1: Adam's first update is lr * g / (|g| + eps), which is lr * sign(g) with the default
        # eps and so flips on gradients that are 0 up to rounding; with eps=1 the update is smooth in g.
        config = LearnerConfig(
            loss_type=loss_type, lr=1e-3, adam_eps=1.0, micro_batch_size=size, kl_coef=0.02
        )
        learner = fresh(config)
        prepared = learner.prepare(batch)
        assert len(prepared.micros) == -(-12 // size)
        learner.optimizer.zero_grad(set_to_none=True)
        metrics = learner.accumulate(prepared)
        g = grads(learner.policy)
        learner.optimizer.step()
        results.append(
            (metrics["loss"], g, {k: p.detach().clone() for k, p in learner.policy.named_parameters()})
        )
    (loss0, g0, p0), *rest = results
    for loss, g, p in rest:
        assert loss == pytest.approx(loss0, abs=1e-5)
        for k in g0:
            torch.testing.assert_close(g[k], g0[k], atol=1e-5, rtol=1e-4, msg=k)
        for k in p0:
            torch.testing.assert_close(p[k], p0[k], atol=1e-5, rtol=0, msg=k)


def test_micro_batches_keep_a_prompts_completions_together_and_weights_add_up():
    prompts = [[7, 7], [5], [7, 7], [6, 6], [5], [6, 6]]
    assert micro_batches(prompts, [3, 9, 1, 2, 4, 8], 2) == [[4, 1], [2, 0], [3, 5]]
    for lt in ("grpo", "bnpo", "dr_grpo"):
        parts = [(2, 10.0), (3, 25.0), (1, 5.0)]
        assert sum(micro_batch_weight(lt, n, t, 6, 40.0) for n, t in parts) == pytest.approx(1.0)


# -- shared prompts ------------------------------------------------------------------------------------
def test_shared_prompts_give_the_update_of_a_prompt_copy_per_completion():
    batch = make_batch(seed=6, groups=3, group_size=4, sampling=True)  # prompts of 4-11 tokens
    batch.completion_ids[5] = []  # an empty completion: nothing to train, nothing to break
    batch.sampling_logprobs[5] = []
    results = {}
    for share in (True, False):
        learner = fresh(
            LearnerConfig(lr=1e-3, adam_eps=1.0, kl_coef=0.02, micro_batch_size=6, share_prompts=share,
                          importance_cap=2.0, num_iterations=2, logprob_chunk=7)
        )  # fmt: skip
        prepared = learner.prepare(batch)
        # each micro-batch holds its distinct prompts once (groups of 4 cut into micro-batches of 6)
        rows = [m.prompt_ids.shape[0] for m in prepared.micros]
        assert rows == ([2, 2] if share else [6, 6])
        for m in prepared.micros:  # against one forward pass over each prompt + completion
            seqs = [batch.prompt_ids[i] + batch.completion_ids[i] for i in m.idx]
            ids = torch.zeros((len(seqs), max(map(len, seqs))), dtype=torch.long)
            for r, q in enumerate(seqs):
                ids[r, : len(q)] = torch.tensor(q)
            attention = (ids != 0).long()
            with torch.no_grad():
                expected, _ = token_logprobs(
                    learner.policy, ids, attention, m.prompt_lens[m.group], m.completion_lens
                )
            torch.testing.assert_close(m.old, expected, atol=2e-5, rtol=0)
        learner.optimizer.zero_grad(set_to_none=True)
        metrics = learner.accumulate(prepared)
        results[share] = (metrics["loss"], grads(learner.policy))
    (loss_a, grads_a), (loss_b, grads_b) = results[True], results[False]
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], atol=1e-5, rtol=1e-4, msg=k)


# -- resume ---------------------------------------------------------------------------------------------
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    config = LearnerConfig(lr=1e-3, kl_coef=0.02, micro_batch_size=5, num_iterations=2, schedule="cosine",
                           warmup_steps=2, total_steps=6, loss_type="dapo")  # fmt: skip
    batches = [make_batch(seed=10 + i) for i in range(6)]
    straight = fresh(config)
    straight_metrics = [straight.step(b) for b in batches]
    first = fresh(config)
    for b in batches[:3]:
        first.step(b)
    first.save(tmp_path / "ckpt", data_position={"next_batch": 3})
    del first
    resumed, position = Learner.resume(tmp_path / "ckpt", config)
    assert position == {"next_batch": 3} and resumed.step_count == 3
    resumed_metrics = [resumed.step(b) for b in batches[position["next_batch"] :]]
    for a, b in zip(straight_metrics[3:], resumed_metrics, strict=True):
        for k in a:
            if not k.startswith("perf/"):
                assert b[k] == pytest.approx(a[k], abs=1e-6), k
    for (k, p), q in zip(straight.policy.named_parameters(), resumed.policy.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=k)


# -- completions with advantage 0 ------------------------------------------------------------------------
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_leaving_out_zero_advantage_completions_changes_no_update(loss_type):
    batch = make_batch(seed=8, groups=3, group_size=4)
    batch.rewards[:4] = [1.0] * 4  # group 0: all equal, advantage 0
    batch.rewards[8:12] = [0.0, 0.5, 1.0, 0.5]  # two completions at the group mean: advantage 0 too
    batch.truncated = [i % 5 == 0 for i in range(12)]  # masked: the normalisers must stay the batch's
    batch.completion_ids[0] = batch.completion_ids[0] * 3  # the longest completion has advantage 0
    batch.completion_ids[0] = batch.completion_ids[0][:60]
    runs = {}
    for skip in (True, False):
        config = LearnerConfig(loss_type=loss_type, lr=1e-3, adam_eps=1.0, micro_batch_size=3,
                               mask_truncated_completions=True, skip_zero_advantage=skip, num_iterations=2)  # fmt: skip
        learner = fresh(config)
        metrics = [learner.step(batch), learner.step(make_batch(seed=9))]
        runs[skip] = metrics, dict(learner.policy.named_parameters())
    (skipped, params), (full, full_params) = runs[True], runs[False]
    assert skipped[0]["batch/zero_advantage_frac"] == pytest.approx(6 / 12)
    assert skipped[0]["batch/padded_tokens"] < full[0]["batch/padded_tokens"]
    for k in ("loss", "batch/trained_tokens", "batch/completions", "batch/truncated_frac", "grad_norm"):
        assert skipped[0][k] == pytest.approx(full[0][k], abs=1e-6), k
    for k, p in full_params.items():
        torch.testing.assert_close(params[k], p, atol=1e-6, rtol=0, msg=k)


def test_a_batch_without_signal_still_steps_the_optimizer_as_with_zero_gradients():
    batch = make_batch(seed=8)
    batch.rewards = [1.0] * 12
    runs = []
    for skip in (True, False):
        learner = fresh(LearnerConfig(lr=1e-3, skip_zero_advantage=skip))
        learner.step(make_batch(seed=9))  # Adam has momentum, so a zero gradient still moves the weights
        m = learner.step(batch)
        runs.append((m, {k: p.detach().clone() for k, p in learner.policy.named_parameters()}))
    (m_skip, p_skip), (m_full, p_full) = runs
    assert m_skip["batch/zero_advantage_frac"] == 1.0 and m_skip["batch/padded_tokens"] == 0
    assert m_skip["loss"] == m_full["loss"] == 0
    for k in p_full:
        torch.testing.assert_close(p_skip[k], p_full[k], atol=1e-7, rtol=0, msg=k)


def test_zero_advantage_completions_stay_in_when_a_kl_term_needs_them():
    batch = make_batch(seed=8)
    batch.rewards[:4] = [1.0] * 4
    learner = fresh(LearnerConfig(lr=1e-3, kl_coef=0.02))
    assert "batch/zero_advantage_frac" not in learner.step(batch)
    assert sum(len(m.idx) for m in learner.prepare(batch).micros) == 12


# -- options and bad configuration ---------------------------------------------------------------------
def test_dynamic_sampling_drops_groups_without_signal_and_reports_it():
    batch = make_batch(seed=4)
    batch.rewards[:4] = [1.0] * 4  # group 0: all equal
    learner = fresh(LearnerConfig(dynamic_sampling=True, lr=1e-4))
    m = learner.step(batch)
    assert m["batch/dropped_group_frac"] == pytest.approx(1 / 3) and m["batch/completions"] == 8


def test_importance_correction_reports_the_sampler_gap_and_masks_work():
    batch = make_batch(seed=5, sampling=True)
    batch.truncated = [i % 3 == 0 for i in range(12)]
    learner = fresh(
        LearnerConfig(importance_cap=2.0, mask_truncated_completions=True, top_entropy_quantile=0.5)
    )
    prepared = learner.prepare(batch)
    assert prepared.metrics["sampler/logprob_gap"] > 0
    trained = sum(len(c) for c, t in zip(batch.completion_ids, batch.truncated, strict=True) if not t)
    assert prepared.total_tokens == trained
    assert all(m.weights is not None and float(m.weights.max()) <= 2.0 for m in prepared.micros)
    assert learner.step(batch)["loss/entropy"] > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"loss_type": "ppo"}, "loss_type='ppo'"),
        ({"clip_low": -0.1}, "clip_low=-0.1"),
        ({"clip_high": -1.0}, "clip_high=-1.0"),
        ({"kl_coef": 0.1, "reference": None}, "kl_coef=0.1 needs a reference"),
        ({"schedule": "cosine"}, "needs total_steps"),
        ({"top_entropy_quantile": 0.0}, "top_entropy_quantile"),
    ],
)
def test_bad_configuration_names_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LearnerConfig(**kwargs)


def test_a_group_size_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match="group_size=5 does not divide the batch of 12"):
        RolloutBatch([[1]] * 12, [[2]] * 12, [0.0] * 12, 5)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        RolloutBatch([[1], []], [[2], [2]], [0.0, 1.0], 2)


def test_shared_prompts_under_gradient_checkpointing_say_what_to_do():
    learner = fresh(LearnerConfig(lr=1e-4))
    learner.policy.gradient_checkpointing_enable()  # transformers then runs the decoder without a cache
    with pytest.raises(ValueError, match="set share_prompts=False"):
        learner.step(make_batch(seed=7))
    learner = fresh(LearnerConfig(lr=1e-4, share_prompts=False))
    learner.policy.gradient_checkpointing_enable()
    assert learner.step(make_batch(seed=7))["grad_norm"] > 0
