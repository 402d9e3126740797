"""SFT data: read sources, mix them by weight, and tokenise every example into `input_ids` and `labels`.

A source is a list of rows of one kind:
- `chat`: instruction rows, either `prompt`/`response` or a chat `messages` list whose last turn is the
  assistant's. The loss is on that last assistant turn only; earlier turns are context.
- `code`: documents (`text`), trained on whole, optionally rewritten by fill-in-the-middle first
  (`grpo.fim`), so FIM applies per document, before packing.

Each source's `weight` is how many passes over it one pass over the mix makes: 0.5 takes a seeded half
of its rows, 2 takes them twice.

Prompts are rendered with the tokenizer's chat template (`template="auto"`), with `DEFAULT_CHAT_TEMPLATE`
(ChatML) when the tokenizer has none, or as plain text (`template="none"`): prompt, then response, then
EOS. The prompt's tokens get label -100. Examples longer than `max_length` are truncated or dropped
(`overlong`), and both are counted.

The tokenised rows go to TRL's `SFTTrainer` as an already-processed dataset (see `grpo.sft` for why).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grpo.fim import FimConfig, FimTokens, add_special_tokens, fim_transform
from grpo.tiny_tokenizer import CHAT_TEMPLATE as DEFAULT_CHAT_TEMPLATE

Kind = Literal["chat", "code"]
IGNORE = -100
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


class SFTDataError(ValueError):
    """A source or row that cannot become a training example; the message names it and what is wrong."""


@dataclass
class Source:
    name: str
    rows: Sequence[Mapping[str, Any]]
    kind: Kind = "chat"
    weight: float = 1.0
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    text_field: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in ("chat", "code"):
            raise SFTDataError(f"source {self.name!r}: kind {self.kind!r} is not one of chat, code")
        if self.weight < 0:
            raise SFTDataError(f"source {self.name!r}: weight must be >= 0, got {self.weight}")
        if not self.rows:
            raise SFTDataError(f"source {self.name!r} has no rows")


@dataclass(frozen=True)
class Example:
    """A chat example (prompt messages or text, and the response) or a code document."""

    source: str
    index: int
    prompt: list[dict[str, str]] | str | None = None
    response: str | None = None
    text: str | None = None


@dataclass
class DataStats:
    rows: dict[str, int] = field(default_factory=dict)  # examples taken from each source
    fim: int = 0
    truncated: int = 0
    dropped: int = 0  # too long (overlong=drop), or nothing left to learn after truncation
    tokens: int = 0
    label_tokens: int = 0

    def line(self) -> str:
        mix = ", ".join(f"{name} {n}" for name, n in self.rows.items())
        return (
            f"{sum(self.rows.values())} examples ({mix}); {self.fim} FIM-transformed; "
            f"{self.truncated} truncated and {self.dropped} dropped for length; "
            f"{self.tokens} tokens, {self.label_tokens} with loss"
        )


def read_rows(path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a JSONL or JSONL.gz file, a `datasets.save_to_disk` folder, or an HF dataset name."""
    p = Path(path).expanduser()
    if p.is_file():
        opener = gzip.open if p.suffix == ".gz" else open
        rows = []
        with opener(p, "rt") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SFTDataError(f"{p}:{n} is not valid JSON: {e}") from None
                if not isinstance(row, dict):
                    raise SFTDataError(f"{p}:{n} is a JSON {type(row).__name__}, not an object")
                rows.append(row)
        return rows
    if not p.exists() and (p.suffix in (".jsonl", ".json", ".gz") or str(path).startswith((".", "/", "~"))):
        raise SFTDataError(f"{path}: no such file")  # a path, not a dataset name: do not ask the hub
    import datasets

    if p.is_dir():
        loaded = datasets.load_from_disk(str(p))
        ds = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    else:
        ds = datasets.load_dataset(str(path), split=split)
    return [dict(row) for row in ds]


def to_example(row: Mapping[str, Any], source: Source, index: int) -> Example:
    where = f"source {source.name!r} row {index}"
    if source.kind == "code":
        text = row.get(source.text_field)
        if not isinstance(text, str):
            raise SFTDataError(f"{where} has no {source.text_field!r} text field (fields: {_fields(row)})")
        return Example(source.name, index, text=text)
    if source.messages_field in row:
        messages = row[source.messages_field]
        if not isinstance(messages, list) or not messages:
            raise SFTDataError(f"{where}: {source.messages_field!r} is not a non-empty list of messages")
        for m in messages:
            if (
                not isinstance(m, Mapping)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                raise SFTDataError(f"{where}: every message needs a string 'role' and 'content', got {m!r}")
        if messages[-1]["role"] != "assistant":
            raise SFTDataError(
                f"{where}: the last message is from {messages[-1]['role']!r}, not the assistant"
            )
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        return Example(source.name, index, prompt=prompt, response=messages[-1]["content"])
    missing = [f for f in (source.prompt_field, source.response_field) if not isinstance(row.get(f), str)]
    if missing:
        raise SFTDataError(
            f"{where} has neither a {source.messages_field!r} list nor string fields "
            f"{source.prompt_field!r} and {source.response_field!r} (missing or not text: {', '.join(missing)}; "
            f"fields: {_fields(row)})"
        )
    return Example(source.name, index, prompt=row[source.prompt_field], response=row[source.response_field])


def _fields(row: Mapping[str, Any]) -> str:
    return ", ".join(sorted(map(str, row))) or "none"


def mix(sources: Sequence[Source], seed: int) -> list[Example]:
    """Every source's examples, `weight` passes over each: whole repeats, then a seeded sample."""
    rng = random.Random(seed)
    out: list[Example] = []
    for source in sources:
        examples = [to_example(row, source, i) for i, row in enumerate(source.rows)]
        passes, part = divmod(source.weight, 1)
        out += examples * int(passes) + rng.sample(examples, round(part * len(examples)))
    if not out:
        raise SFTDataError(
            f"the mix of {', '.join(s.name for s in sources)} is empty: every weight rounds to 0 rows"
        )
    return out


def resolve_template(tokenizer: Any, model: Any, template: str) -> str | None:
    """The chat template to render with: None for plain text, else the Jinja source.

    `auto` is the tokenizer's own template, or `DEFAULT_CHAT_TEMPLATE` (ChatML, with its two special
    tokens added to the tokenizer and the embeddings resized) when it has none. `chatml` forces that
    default. Anything else is a path to a Jinja file.
    """
    if template == "none":
        return None
    if template == "auto" and tokenizer.chat_template:
        return tokenizer.chat_template
    if template in ("auto", "chatml"):
        add_special_tokens(tokenizer, model, CHATML_TOKENS)
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        return DEFAULT_CHAT_TEMPLATE
    path = Path(template).expanduser()
    if not path.is_file():
        raise SFTDataError(f"template {template!r} is not auto, chatml, none or an existing Jinja file")
    tokenizer.chat_template = path.read_text()
    return tokenizer.chat_template


def encode(example: Example, tokenizer: Any, template: str | None) -> tuple[list[int], list[int]]:
    """`(input_ids, labels)` of one example; labels are -100 where no loss is taken."""
    eos = tokenizer.eos_token_id
    if example.text is not None:
        ids = tokenizer(example.text, add_special_tokens=False)["input_ids"] + [eos]
        return ids, list(ids)
    assert example.response is not None and example.prompt is not None
    if template is None:
        if not isinstance(example.prompt, str):
            raise SFTDataError(
                f"source {example.source!r} row {example.index} is a chat (messages) row, which needs a chat "
                "template; template=none renders only prompt/response rows"
            )
        prompt = tokenizer(example.prompt)["input_ids"]
        response = tokenizer(example.response, add_special_tokens=False)["input_ids"] + [eos]
        return prompt + response, [IGNORE] * len(prompt) + response
    messages = (
        [{"role": "user", "content": example.prompt}] if isinstance(example.prompt, str) else example.prompt
    )
    prompt_text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, chat_template=template
    )
    full_text = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.response}],
        tokenize=False,
        chat_template=template,
    )
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    n = 0  # the response starts where the two tokenisations part
    while n < min(len(prompt), len(full)) and prompt[n] == full[n]:
        n += 1
    return full, [IGNORE] * n + full[n:]


def tokenize(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    template: str | None,
    max_length: int,
    overlong: Literal["truncate", "drop"] = "truncate",
    fim: FimConfig | None = None,
    fim_tokens: FimTokens | None = None,
    seed: int = 0,
) -> tuple[dict[str, list[list[int]]], DataStats]:
    """Columns `input_ids` and `labels` for the examples, and what happened to them."""
    if overlong not in ("truncate", "drop"):
        raise SFTDataError(f"overlong {overlong!r} is not one of truncate, drop")
    rng = random.Random(seed)
    stats = DataStats()
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for ex in examples:
        stats.rows[ex.source] = stats.rows.get(ex.source, 0) + 1
        if ex.text is not None and fim is not None and fim.rate > 0:
            assert fim_tokens is not None
            text = fim_transform(ex.text, rng, fim, fim_tokens)
            stats.fim += text != ex.text
            ex = Example(ex.source, ex.index, text=text)
        ids, labels = encode(ex, tokenizer, template)
        cut = len(ids) > max_length
        if cut and overlong == "drop":
            stats.dropped += 1
            continue
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels[1:]):
            stats.dropped += 1
            continue
        stats.truncated += cut
        columns["input_ids"].append(ids)
        columns["labels"].append(labels)
        stats.tokens += len(ids)
        stats.label_tokens += sum(label != IGNORE for label in labels[1:])
    if not columns["input_ids"]:
        raise SFTDataError(f"no example is left to train on: {stats.line()}")
    return columns, stats
