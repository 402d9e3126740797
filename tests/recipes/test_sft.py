"""`recipes.sft` end to end: the tiny model learns the chain problems from scratch, its checkpoint loads in
the learner, HF generate and a vLLM engine; FIM training fills held-out middles better; SmolLM2 trains and
generates; bad configs are refused."""

import json
import random

import pytest
import torch
from hydra import compose, initialize_config_dir

from grpo.fim import QWEN, FimConfig, fim_transform
from grpo.hf_worker import HFWorker
from grpo.learner import Learner, LearnerConfig, RolloutBatch
from grpo.models import load_model
from grpo.rollout import SamplingConfig
from grpo.sft import FINAL_DIR, METRICS_FILE, RESULT_FILE
from grpo.sft_data import SFTDataError
from recipes.sft import run
from rewards import chains
from tests.recipes.conftest import CONFIGS, TINY_SFT_STEPS
from tests.recipes.conftest import FAST_SFT as FAST

GREEDY = SamplingConfig(temperature=0.0, max_tokens=40, stop=("\ndef ",))


def compose_sft(overrides):
    with initialize_config_dir(str(CONFIGS), version_base=None):
        return compose("sft", overrides=overrides)


def test_tiny_sft_lowers_held_out_loss_and_writes_its_outputs(tiny_sft):
    out, result = tiny_sft
    print(
        f"tiny SFT: {result.steps} steps in {result.seconds:.0f} s, held-out loss "
        f"{result.eval_loss_before:.3f} -> {result.eval_loss_after:.3f}"
    )
    assert result.steps == TINY_SFT_STEPS
    assert result.eval_loss_after < 0.25 * result.eval_loss_before  # 7.64 -> 0.29 here
    assert json.loads((out / RESULT_FILE).read_text())["model_dir"] == str((out / FINAL_DIR).resolve())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / FINAL_DIR / name).is_file(), name
    metrics = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert len(evals) >= 3 and evals[-1] < evals[0]  # before, then every 20 steps
    assert any("loss" in m and m["step"] == 10 for m in metrics)
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard events"
    assert (out / "checkpoint-40" / "optimizer.pt").is_file()
    assert (out / "config.yaml").is_file()


def test_checkpoint_loads_in_the_learner_and_generates(tiny_sft):
    _, result = tiny_sft
    prompts = [r["prompt"] for r in chains.generate("validation", 4, seed=9)]
    groups = HFWorker(result.model_dir).generate(
        prompts, 2, SamplingConfig(temperature=1.0, max_tokens=40, seed=0)
    )
    texts = [c.text for g in groups for c in g.completions]
    assert sum(t.startswith("    x = ") for t in texts) >= 6, texts  # it writes the body's first step
    learner = Learner(LearnerConfig(model=result.model_dir, lr=1e-5))
    samples = [(g, c) for g in groups for c in g.completions]
    batch = RolloutBatch(
        [g.prompt_token_ids for g, _ in samples],
        [c.token_ids for _, c in samples],
        [float(i % 2) for i in range(len(samples))],
        2,
        [c.logprobs for _, c in samples],
    )
    metrics = learner.step(batch)
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0


@pytest.mark.vllm
def test_checkpoint_generates_in_vllm_as_in_hf(tiny_sft):
    from grpo.vllm_worker import VLLMWorker

    _, result = tiny_sft
    prompts = [r["prompt"] for r in chains.generate("heldout", 4, seed=9)]
    hf = HFWorker(result.model_dir).generate(prompts, 1, GREEDY)
    engine = VLLMWorker(result.model_dir, max_model_len=512)
    try:
        vllm = engine.generate(prompts, 1, GREEDY)
    finally:
        engine.close()
    assert [g.completions[0].token_ids for g in vllm] == [g.completions[0].token_ids for g in hf]
    assert all(g.completions[0].text.startswith("    x = ") for g in vllm), [
        g.completions[0].text for g in vllm
    ]


def middle_loss(model_dir, docs):
    """Mean NLL of the middle tokens of PSM-laid-out held-out documents (every document cut at random)."""
    model, tok = load_model(model_dir)
    rng = random.Random(0)
    middle_id = tok.convert_tokens_to_ids(QWEN.middle)
    total, count = 0.0, 0
    for doc in docs:
        ids = tok(fim_transform(doc, rng, FimConfig(rate=1.0), QWEN), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[*ids, tok.eos_token_id]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        logprobs = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]  # of ids[1:]
        start = ids[0].tolist().index(middle_id)  # targets after the <|fim_middle|> sentinel
        total -= logprobs[start:].sum().item()
        count += logprobs[start:].numel()
    return total / count


def test_fim_training_fills_held_out_middles_better(tmp_path):
    docs = [r["text"] for r in chains.code_documents("validation", 60, seed=4)]
    losses = {}
    for rate in (0.0, 0.5):
        cfg = compose_sft(
            [
                f"output_dir={tmp_path / str(rate)}",
                "data=chains_fim",
                f"data.fim.rate={rate}",
                "trainer.max_steps=60",
                "+trainer.eval_strategy=no",
                "+trainer.save_strategy=no",
                *FAST,
            ]
        )
        losses[rate] = middle_loss(run(cfg).model_dir, docs)
    print(f"held-out middle NLL: without FIM {losses[0.0]:.3f}, with FIM (rate 0.5) {losses[0.5]:.3f}")
    assert losses[0.5] < 0.7 * losses[0.0]


def test_refuses_to_overwrite_a_finished_run(tiny_sft):
    out, _ = tiny_sft
    with pytest.raises(SystemExit, match=r"already holds a finished SFT run .* overwrite=true"):
        run(compose_sft([f"output_dir={out}"]))


def test_config_typos_are_refused_with_a_suggestion(tmp_path):
    with pytest.raises(
        SFTDataError,
        match=r"trainer.learnin_rate is not an option of trl.SFTConfig; did you mean "
        "'learning_rate'",
    ):
        run(compose_sft([f"output_dir={tmp_path}", "+trainer.learnin_rate=0.1"]))
    with pytest.raises(
        SFTDataError, match="data source 'chains': unknown key 'wieght'; did you mean 'weight'"
    ):
        run(compose_sft([f"output_dir={tmp_path}", "+data.train.0.wieght=2"]))
    with pytest.raises(SFTDataError, match="overlong 'cut' is not one of truncate, drop"):
        run(compose_sft([f"output_dir={tmp_path}", "data.overlong=cut"]))


@pytest.mark.slow
@pytest.mark.vllm
def test_smollm2_sft_steps_then_vllm_generates(tmp_path):
    from grpo.vllm_worker import VLLMWorker

    rows = [{"messages": [{"role": "user", "content": r["prompt"]},
                          {"role": "assistant", "content": "```python\n" + r["prompt"] + r["canonical_solution"] + "```"}]}
            for r in chains.generate("train", 24, seed=0)]  # fmt: skip
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_sft(
        [
            f"output_dir={tmp_path / 'run'}",
            "model=smollm2_135m_instruct",
            "data=jsonl",
            f"data.train.0.path={data}",
            "data.eval_fraction=0.2",
            "data.max_length=384",
            "trainer.max_steps=3",
            "trainer.per_device_train_batch_size=4",
            "trainer.packing=false",
            "trainer.eval_steps=3",
            "trainer.logging_steps=1",
        ]
    )
    result = run(cfg)
    print(
        f"SmolLM2 SFT: {result.steps} steps in {result.seconds:.0f} s, held-out loss "
        f"{result.eval_loss_before:.3f} -> {result.eval_loss_after:.3f}"
    )
    assert result.steps == 3 and result.eval_loss_after < result.eval_loss_before
    _, tok = load_model(result.model_dir)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": rows[0]["messages"][0]["content"]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    engine = VLLMWorker(result.model_dir, max_model_len=1024)
    try:
        group = engine.generate([prompt], 1, SamplingConfig(temperature=0.0, max_tokens=48))[0]
    finally:
        engine.close()
    assert group.completions[0].token_ids and group.completions[0].text.strip(), group.completions[0]


@pytest.mark.parametrize("model", ["tiny", "smollm2_135m_instruct", "path"])
@pytest.mark.parametrize("data", ["chains", "chains_fim", "jsonl"])
def test_every_model_and_data_option_composes(model, data, tmp_path):
    from recipes.sft import build_source, data_config

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "p", "response": "r"}\n')
    cfg = compose_sft(
        [
            f"model={model}",
            f"data={data}",
            *(["model.name=/some/folder"] if model == "path" else []),
            *([f"data.train.0.path={rows}"] if data == "jsonl" else []),
        ]
    )
    assert cfg.trainer.learning_rate == cfg.model.sft_learning_rate > 0
    config = data_config(cfg.data, seed=0)
    assert (config.fim is not None) == (data == "chains_fim")
    sources = [build_source(s) for s in cfg.data.train]
    assert all(s.rows for s in sources)
    assert {s.kind for s in sources} == ({"chat", "code"} if data == "chains_fim" else {"chat"})
