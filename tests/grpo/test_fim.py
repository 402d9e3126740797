"""The fill-in-the-middle transform: layouts, sentinel ids, the rate, and that no text is lost."""

import random
import re

import pytest
import torch

from grpo.fim import QWEN, STARCODER, FimConfig, ensure_fim_tokens, fim_tokens_for, fim_transform, layout
from grpo.models import load_tokenizer
from rewards import chains

DOCS = [r["text"] for r in chains.code_documents("train", 300, seed=5)]
SENTINEL = re.compile("|".join(re.escape(t) for t in (QWEN.prefix, QWEN.suffix, QWEN.middle)))


def undo(text: str) -> str:
    """The original document back from a PSM or SPM layout (or the text itself when untouched)."""
    if not text.startswith(QWEN.prefix):
        return text
    body = text[len(QWEN.prefix) :]
    if body.startswith(QWEN.suffix):  # SPM: suffix, then prefix + middle
        suffix, prefix_middle = body[len(QWEN.suffix) :].split(QWEN.middle)
        return prefix_middle + suffix
    prefix, rest = body.split(QWEN.suffix)
    suffix, middle = rest.split(QWEN.middle)
    return prefix + middle + suffix


def test_psm_and_spm_layouts():
    assert layout("A", "B", "C", QWEN, "psm") == "<|fim_prefix|>A<|fim_suffix|>C<|fim_middle|>B"
    assert layout("A", "B", "C", QWEN, "spm") == "<|fim_prefix|><|fim_suffix|>C<|fim_middle|>AB"
    with pytest.raises(ValueError, match="'mps' is not one of psm, spm"):
        layout("A", "B", "C", QWEN, "mps")


@pytest.mark.parametrize("unit", ["char", "line"])
@pytest.mark.parametrize("spm_rate", [0.0, 0.5, 1.0])
def test_no_text_is_lost_or_duplicated(unit, spm_rate):
    rng = random.Random(0)
    config = FimConfig(rate=1.0, spm_rate=spm_rate, unit=unit)
    spm = 0
    for doc in DOCS:
        out = fim_transform(doc, rng, config, QWEN)
        assert len(SENTINEL.findall(out)) == 3
        assert undo(out) == doc
        assert len(out) == len(doc) + sum(map(len, (QWEN.prefix, QWEN.suffix, QWEN.middle)))
        spm += out.startswith(QWEN.prefix + QWEN.suffix)
    if unit == "char":  # with line cuts, an empty PSM prefix reads like SPM
        assert abs(spm / len(DOCS) - spm_rate) < 0.1


def test_line_unit_cuts_at_line_starts():
    rng = random.Random(1)
    for doc in DOCS[:100]:
        out = fim_transform(doc, rng, FimConfig(rate=1.0, unit="line"), QWEN)
        prefix, rest = out[len(QWEN.prefix) :].split(QWEN.suffix)
        suffix, middle = rest.split(QWEN.middle)
        assert prefix == "" or prefix.endswith("\n")
        assert middle == "" or middle.endswith("\n") or suffix == ""


def test_rate_over_many_documents():
    rng = random.Random(2)
    docs = DOCS * 10
    for rate in (0.0, 0.5, 0.9):
        moved = sum(fim_transform(d, rng, FimConfig(rate=rate), QWEN) != d for d in docs)
        assert abs(moved / len(docs) - rate) < 0.03, (rate, moved)


def test_sentinels_are_single_special_ids_of_the_tiny_tokenizer():
    tokenizer = load_tokenizer("tiny")
    assert fim_tokens_for(tokenizer) == QWEN
    out = fim_transform(DOCS[0], random.Random(3), FimConfig(rate=1.0), QWEN)
    ids = tokenizer(out, add_special_tokens=False)["input_ids"]
    sentinel_ids = [tokenizer.convert_tokens_to_ids(t) for t in (QWEN.prefix, QWEN.suffix, QWEN.middle)]
    assert ids[0] == sentinel_ids[0]
    assert [i for i in ids if i in sentinel_ids] == sentinel_ids
    assert tokenizer.decode(ids) == out


def test_missing_sentinels_are_added_and_embeddings_resized():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {ch: i for i, ch in enumerate(["<eos>", *"abcdefghijklmnopqrstuvwxyz \n"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")
    assert fim_tokens_for(tokenizer) is None
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(vocab),
            hidden_size=64,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
        )
    )
    before = model.get_input_embeddings().weight.detach().clone()
    tokens, added = ensure_fim_tokens(tokenizer, model)
    assert tokens == QWEN and added == [QWEN.prefix, QWEN.middle, QWEN.suffix, QWEN.pad]
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == len(tokenizer) == len(vocab) + 4
    assert torch.equal(weight[: len(vocab)], before)
    ids = tokenizer(f"{QWEN.prefix}ab{QWEN.suffix}c{QWEN.middle}", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and ids[0] == len(vocab) and ids[3] == len(vocab) + 2
    assert ensure_fim_tokens(tokenizer, model) == (QWEN, [])  # a second call adds nothing


def test_known_sentinel_sets_are_found():
    class Vocab:
        def __init__(self, tokens):
            self.tokens = tokens

        def get_vocab(self):
            return {t: i for i, t in enumerate(self.tokens)}

    assert fim_tokens_for(Vocab(["<fim_prefix>", "<fim_middle>", "<fim_suffix>"])) == STARCODER


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match=r"fim.rate must be in \[0, 1\], got 1.5"):
        FimConfig(rate=1.5)
    with pytest.raises(ValueError, match=r"fim.unit 'word'"):
        FimConfig(unit="word")
