"""grpo.models resolves every kind of model name, builds `tiny` and converts SmolLM2, and explains bad names."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from grpo import models
from grpo.models import ModelNotFoundError, load_model, resolve_model_path


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_CODER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tiny_is_a_seeded_qwen2_with_head_dim_64(fresh_cache):
    model, tokenizer = load_model("tiny")
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.head_dim == 64 and cfg.vocab_size == len(tokenizer) == 2048
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 8e6
    # The same weights on every build: a second build in another cache folder is identical.
    first = {k: v.clone() for k, v in model.state_dict().items()}
    resolve_model_path("tiny")
    shutil.rmtree(fresh_cache)
    again, _ = load_model("tiny")
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, first[k], rtol=0, atol=0)


def test_tiny_tokenizer_round_trips_code_and_has_a_chat_template(fresh_cache):
    tokenizer = models.load_tokenizer("tiny")
    code = "def add(a, b):\n    return a + b  # ünïcode ✓\n"
    assert tokenizer.decode(tokenizer(code)["input_ids"]) == code
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    for token in ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]:
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id


def test_tiny_generates(fresh_cache):
    model, tokenizer = load_model("tiny")
    ids = tokenizer("def f(x):", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5


def test_cpu_gqa_attention_matches_transformers_sdpa_under_left_padding(fresh_cache):
    # tiny has 4 query heads over 2 key/value heads: on the CPU it attends with CPU_GQA_ATTENTION.
    model, tokenizer = load_model("tiny")
    assert model.config._attn_implementation == models.CPU_GQA_ATTENTION
    reference, _ = load_model("tiny")
    reference.set_attn_implementation("sdpa")
    tokenizer.padding_side = "left"
    batch = tokenizer(["def f(x):\n    return x", "x = 1"], return_tensors="pt", padding=True)
    assert not batch["attention_mask"].all()  # the second row is padded
    real = batch["attention_mask"].bool()
    ours, theirs = model(**batch).logits, reference(**batch).logits
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=1e-5)
    ours[real].square().mean().backward()
    theirs[real].square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    # Decoding with a cache: greedy tokens are the same.
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    assert torch.equal(model.generate(**batch, **kwargs), reference.generate(**batch, **kwargs))


def test_a_model_that_may_go_to_an_accelerator_keeps_transformers_sdpa(fresh_cache, monkeypatch):
    # SFT loads with no device and its trainer moves the model to the accelerator when there is one.
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    model, _ = load_model("tiny")
    assert model.config._attn_implementation == "sdpa"
    pinned, _ = load_model("tiny", device="cpu")
    assert pinned.config._attn_implementation == models.CPU_GQA_ATTENTION


def test_saved_models_do_not_name_the_cpu_attention(fresh_cache, tmp_path):
    # A checkpoint must load where the attention function is not registered (vLLM, plain transformers).
    model, _ = load_model("tiny")
    model.save_pretrained(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert models.CPU_GQA_ATTENTION not in json.dumps(config)


def test_local_folder_is_used_as_is(fresh_cache):
    path = resolve_model_path("tiny")
    assert resolve_model_path(str(path)) == path


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_model_path(str(tmp_path))


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'tinyy'.*Did you mean 'tiny'\?"):
        resolve_model_path("tinyy")


def test_hub_id_while_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        ModelNotFoundError, match=r"'Qwen/Qwen2.5-Coder-1.5B'.*not in the local HF cache.*offline"
    ):
        resolve_model_path("Qwen/Qwen2.5-Coder-1.5B")


def test_unreachable_hub_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}",
    )
    with pytest.raises(ModelNotFoundError, match=r"could not be downloaded.*offline"):
        resolve_model_path("Qwen/Qwen2.5-Coder-1.5B")


def test_cli_reports_an_unknown_model_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "grpo.models", "smollm3"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "error: unknown model 'smollm3'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_smollm2_converts_from_the_bundled_gguf_and_reloads(fresh_cache):
    from transformers import AutoModelForCausalLM

    path = resolve_model_path("smollm2-135m-instruct")
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()

    reloaded, tokenizer = load_model("smollm2-135m-instruct")
    gguf = models.smollm2_gguf_path()
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ids = tokenizer("def fibonacci(n):", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits, original(**ids).logits, rtol=0, atol=1e-4)
    out = reloaded.generate(**ids, max_new_tokens=8, do_sample=False)
    completion = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(completion.strip()) > 0
