"""SFT data: masks under a real chat template, packing without attention across documents, mixing,
and clear errors for bad rows, empty data and over-long examples."""

import json

import pytest
import torch

from grpo.fim import QWEN, FimConfig
from grpo.models import load_model, load_tokenizer
from grpo.sft_data import (
    IGNORE,
    Example,
    SFTDataError,
    Source,
    encode,
    mix,
    read_rows,
    resolve_template,
    to_example,
    tokenize,
)
from rewards import chains


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


def learned_text(tokenizer, ids, labels):
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=False) if label != IGNORE])


def test_smollm2_template_masks_the_prompt(smollm2_tokenizer):
    tok = smollm2_tokenizer
    template = resolve_template(tok, None, "auto")
    assert template == tok.chat_template and "SmolLM" in template
    source = Source("chat", [{"messages": [
        {"role": "user", "content": "Write add."},
        {"role": "assistant", "content": "def add(a, b): return a + b"},
        {"role": "user", "content": "Now subtract."},
        {"role": "assistant", "content": "def sub(a, b):\n    return a - b"},
    ]}])  # fmt: skip
    ids, labels = encode(to_example(source.rows[0], source, 0), tok, template)
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert "def add(a, b)" in text  # the earlier turn is context ...
    assert (
        learned_text(tok, ids, labels) == "def sub(a, b):\n    return a - b<|im_end|>\n"
    )  # ... not a target
    n_prompt = labels.index(next(label for label in labels if label != IGNORE))
    prompt = tok.apply_chat_template(
        source.rows[0]["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(ids[:n_prompt]) == prompt
    assert all(label == IGNORE for label in labels[:n_prompt]) and labels[n_prompt:] == ids[n_prompt:]


def test_prompt_response_rows_under_a_template_and_as_plain_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = Example("s", 0, prompt="Say hi.", response="hi")
    ids, labels = encode(ex, tok, tok.chat_template)
    assert tok.decode(ids).endswith(
        "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n"
    )
    assert learned_text(tok, ids, labels) == "hi<|im_end|>\n"
    ids, labels = encode(ex, tok, None)
    assert tok.decode(ids) == "Say hi.hi<|im_end|>"
    assert learned_text(tok, ids, labels) == "hi<|im_end|>"


def test_a_tokenizer_without_template_gets_chatml(tiny):
    model, _ = tiny
    tok = load_tokenizer("tiny")
    tok.chat_template = None
    template = resolve_template(tok, model, "auto")
    ids, labels = encode(Example("s", 0, prompt="p", response="r"), tok, template)
    assert tok.decode(ids) == "<|im_start|>user\np<|im_end|>\n<|im_start|>assistant\nr<|im_end|>\n"
    assert learned_text(tok, ids, labels) == "r<|im_end|>\n"


def test_mixing_weights_and_fim_counts(tiny):
    _, tok = tiny
    a = Source("a", chains.sft_rows("train", 40, seed=0), weight=2.0)
    b = Source("b", chains.sft_rows("train", 40, seed=1), weight=0.5)
    code = Source("code", chains.code_documents("train", 100, seed=2), kind="code", weight=1.0)
    examples = mix([a, b, code], seed=0)
    assert [sum(e.source == s for e in examples) for s in ["a", "b", "code"]] == [80, 20, 100]
    assert len({e.index for e in examples if e.source == "b"}) == 20  # a half, without repeats
    cols, stats = tokenize(
        examples, tok, template=None, max_length=512, fim=FimConfig(rate=0.5), fim_tokens=QWEN
    )
    assert stats.rows == {"a": 80, "b": 20, "code": 100}
    assert 30 <= stats.fim <= 70
    prefix_id = tok.convert_tokens_to_ids(QWEN.prefix)
    assert sum(ids[0] == prefix_id for ids in cols["input_ids"]) == stats.fim
    code_rows = cols["labels"][100:]
    assert all(label != IGNORE for labels in code_rows for label in labels)  # documents: loss everywhere


def test_overlong_examples_are_truncated_or_dropped_and_counted(tiny):
    _, tok = tiny
    rows = [{"prompt": "def f(x):\n", "response": "    return x\n" * n} for n in (1, 2, 40, 60)]
    examples = mix([Source("s", rows)], seed=0)
    cols, stats = tokenize(examples, tok, template=None, max_length=64, overlong="truncate")
    assert (stats.truncated, stats.dropped) == (2, 0)
    assert [len(ids) for ids in cols["input_ids"]][2:] == [64, 64]
    cols, stats = tokenize(examples, tok, template=None, max_length=64, overlong="drop")
    assert (stats.truncated, stats.dropped) == (0, 2) and len(cols["input_ids"]) == 2
    assert "2 dropped for length" in stats.line()
    long_prompt = [{"prompt": "x = 1\n" * 100, "response": "y"}]  # truncation would leave no target
    with pytest.raises(SFTDataError, match=r"no example is left to train on: 1 examples .* 1 dropped"):
        tokenize(mix([Source("p", long_prompt)], 0), tok, template=None, max_length=64)


def test_bad_rows_and_empty_data_are_named(tmp_path):
    source = Source("mine", [{"prompt": "a", "response": "b"}, {"prompt": "a", "answer": "b"}])
    with pytest.raises(
        SFTDataError,
        match=r"source 'mine' row 1 .* 'prompt' and 'response' .*missing or not "
        r"text: response; fields: answer, prompt\)",
    ):
        mix([source], 0)
    bad_chat = Source("c", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(SFTDataError, match="source 'c' row 0: the last message is from 'user'"):
        mix([bad_chat], 0)
    with pytest.raises(SFTDataError, match="source 'code' row 0 has no 'text' text field"):
        mix([Source("code", [{"content": "x"}], kind="code")], 0)
    with pytest.raises(SFTDataError, match="source 'empty' has no rows"):
        Source("empty", [])
    with pytest.raises(SFTDataError, match="every weight rounds to 0 rows"):
        mix([Source("few", [{"prompt": "a", "response": "b"}], weight=0.1)], 0)
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n[1, 2]\n')
    with pytest.raises(SFTDataError, match=r"rows.jsonl:3 is a JSON list, not an object"):
        read_rows(path)
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": \n')
    with pytest.raises(SFTDataError, match=r"rows.jsonl:2 is not valid JSON"):
        read_rows(path)


def test_packed_documents_do_not_attend_to_each_other(tiny):
    """TRL's padding-free collator, as SFTTrainer packs: each document's logits are those it gets alone."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model, tok = tiny
    cols, _ = tokenize(
        mix([Source("s", chains.sft_rows("train", 3, seed=0))], 0), tok, template=None, max_length=512
    )
    examples = [
        {"input_ids": i, "labels": lab} for i, lab in zip(cols["input_ids"], cols["labels"], strict=False)
    ]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(examples)
    assert batch["input_ids"].shape == (1, sum(len(i) for i in cols["input_ids"]))
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        start = 0
        for ids in cols["input_ids"]:
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + len(ids)], alone, atol=1e-4, rtol=1e-4)
            start += len(ids)


def test_rows_from_jsonl_gz_and_a_saved_hf_dataset(tmp_path):
    import gzip

    import datasets

    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(3)]
    with gzip.open(tmp_path / "rows.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert read_rows(tmp_path / "rows.jsonl.gz") == rows
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])}
                         ).save_to_disk(str(tmp_path / "ds"))  # fmt: skip
    assert read_rows(tmp_path / "ds") == rows
    assert read_rows(tmp_path / "ds", split="test") == rows[:1]
