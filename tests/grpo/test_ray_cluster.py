"""The pools on a simulated two-node Ray cluster, and the clear errors of bad input."""

import functools
import json
import re
import subprocess
import sys

import pytest
import ray
import torch

import rewards
from grpo.hf_worker import HFWorker
from grpo.models import resolve_model_path
from grpo.ray_pool import (
    PoolConfig,
    RayGraderPool,
    RayRolloutPool,
    WorkerStartError,
    init_ray,
    sample_and_grade,
)
from grpo.rollout import SamplingConfig
from rewards.grades import VERDICTS
from rewards.problems import load_problems


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    nodes.add_node(num_cpus=2)
    init_ray(nodes.address)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_rollout_and_grading_actors_land_on_both_nodes_and_a_step_completes(cluster):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    tiny = str(resolve_model_path("tiny"))
    rollout = RayRolloutPool(functools.partial(HFWorker, tiny), PoolConfig(num_workers=2))
    graders = RayGraderPool(functools.partial(rewards.TestCaseGrader, workers=1), PoolConfig(num_workers=2))
    try:
        assert len(set(rollout.nodes)) == 2 and len(set(graders.nodes)) == 2
        problems = load_problems("humaneval")[:4]
        prompts = [p.prompt for p in problems]
        sampling = SamplingConfig(temperature=1.0, max_tokens=16, seed=0)
        groups, grades, timeline = sample_and_grade(rollout, graders, problems, prompts, 2, sampling)
    finally:
        rollout.shutdown()
        graders.shutdown()
    assert [g.prompt for g in groups] == prompts
    assert [len(g.completions) for g in groups] == [2] * 4
    assert all(
        grade.verdict in VERDICTS and grade.verdict != "sandbox_error" for gs in grades for grade in gs
    )
    assert timeline.generation and len(timeline.grading) == 4


def test_a_model_the_engine_cannot_run_names_the_cause(cluster, tmp_path):
    from grpo.vllm_worker import VLLMWorker

    if torch.cuda.is_available():
        pytest.skip("the head_dim limit is the CPU attention's")
    config = {"hidden_size": 64, "num_attention_heads": 4, "model_type": "qwen2"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    on_cpu = functools.partial(VLLMWorker, str(tmp_path))
    with pytest.raises(WorkerStartError, match=r"rollout worker 0 could not start: .*head_dim 16, but vLLM"):
        RayRolloutPool(on_cpu, PoolConfig(num_workers=1))


def test_a_worker_that_cannot_start_names_the_cause(cluster):
    with pytest.raises(
        WorkerStartError, match=r"rollout worker 0 could not start: .*unknown model 'no-such-model'"
    ):
        RayRolloutPool(functools.partial(HFWorker, "no-such-model"), PoolConfig(num_workers=1))


def test_a_pool_the_cluster_cannot_hold_is_refused_at_once(cluster):
    with pytest.raises(WorkerStartError, match=r"2 workers x 1 GPU = 2 GPU, but the Ray cluster has 0 GPU"):
        RayRolloutPool(functools.partial(HFWorker, "tiny"), PoolConfig(num_workers=2, num_gpus_per_worker=1))


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:1", "Ray is not reachable at address '127.0.0.1:1': .*Connection refused"),
        ("nowhere", "Ray address 'nowhere' is not 'auto', 'host:port' or 'ray://host:port'"),
    ],
)
def test_an_unreachable_ray_is_one_clear_error(address, message):
    code = f"from grpo.ray_pool import init_ray; init_ray({address!r}, timeout_s=5)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("grpo.ray_pool.RayUnavailableError: ")
    assert re.search(message, last), last


def test_pool_config_names_a_bad_option():
    with pytest.raises(ValueError, match="placement_strategy 'EVERYWHERE' is not one of PACK, SPREAD"):
        PoolConfig(placement_strategy="EVERYWHERE")
    with pytest.raises(ValueError, match="num_workers must be at least 1, got 0"):
        PoolConfig(num_workers=0)
