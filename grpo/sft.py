"""Supervised fine-tuning: the starting policy for GRPO, trained with TRL's `SFTTrainer`.

TRL does what it does well: packing (best-fit decreasing into `max_length` rows, padding-free, with
position ids that restart per document, so no token attends across documents), the collator, the
training loop, the LR schedule, gradient accumulation, periodic evaluation and checkpoints.

What this module adds, and why TRL's own preparation is not used for it:
- `grpo.sft_data` tokenises the examples and hands TRL `input_ids` and `labels`. One mix holds chat
  rows and fill-in-the-middle code documents, and TRL's dataset types hold one kind per dataset.
  Over-long examples are dropped or truncated with a count, where TRL truncates without saying.
- FIM (`grpo.fim`), with its sentinel tokens added to tokenizers that lack them.
- A default chat template for tokenizers without one.
- A held-out loss before training as well as during it, metrics as JSONL beside TensorBoard's, and a
  final HF folder (model and tokenizer) whose path is written to `sft_result.json` for the next stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo.fim import FimConfig, ensure_fim_tokens
from grpo.sft_data import DataStats, SFTDataError, Source, mix, resolve_template, tokenize

RESULT_FILE = "sft_result.json"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"


@dataclass
class DataConfig:
    template: str = "auto"  # auto | chatml | none | path to a Jinja file (see grpo.sft_data)
    max_length: int = 1024
    overlong: str = "truncate"  # truncate | drop
    eval_fraction: float = 0.05  # held out from the training mix when no eval sources are given
    fim: FimConfig | None = None  # applies to `code` sources
    seed: int = 0


@dataclass
class PreparedData:
    train: dict[str, list[list[int]]]
    eval: dict[str, list[list[int]]] | None
    stats: DataStats
    eval_stats: DataStats | None


@dataclass
class SFTResult:
    model_dir: str
    steps: int
    seconds: float
    train_loss: float
    eval_loss_before: float | None
    eval_loss_after: float | None
    data: str

    def save(self, output_dir: Path) -> Path:
        path = output_dir / RESULT_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path


def prepare_data(
    model: Any, tokenizer: Any, train: Sequence[Source], eval: Sequence[Source], config: DataConfig
) -> PreparedData:
    """Resolve the template and FIM sentinels (resizing the model's embeddings if tokens are added),
    mix the sources and tokenise them. Without eval sources, `eval_fraction` of the mix is held out."""
    template = resolve_template(tokenizer, model, config.template)
    fim_tokens = None
    if config.fim is not None and config.fim.rate > 0 and any(s.kind == "code" for s in [*train, *eval]):
        fim_tokens, _ = ensure_fim_tokens(tokenizer, model)
    examples = mix(train, config.seed)
    eval_examples = mix(eval, config.seed) if eval else []
    if not eval and config.eval_fraction > 0:
        random.Random(config.seed).shuffle(examples)
        n_eval = max(1, round(config.eval_fraction * len(examples)))
        if n_eval >= len(examples):
            raise SFTDataError(
                f"eval_fraction {config.eval_fraction} of {len(examples)} examples leaves none to train on"
            )
        eval_examples, examples = examples[:n_eval], examples[n_eval:]
    kwargs = {
        "template": template,
        "max_length": config.max_length,
        "overlong": config.overlong,
        "fim": config.fim,
        "fim_tokens": fim_tokens,
    }
    train_cols, stats = tokenize(examples, tokenizer, seed=config.seed, **kwargs)  # type: ignore[arg-type]
    eval_cols, eval_stats = (
        tokenize(eval_examples, tokenizer, seed=config.seed + 1, **kwargs)  # type: ignore[arg-type]
        if eval_examples
        else (None, None)
    )
    return PreparedData(train_cols, eval_cols, stats, eval_stats)


def sft_config(output_dir: str | Path, max_length: int, has_eval: bool, overrides: Mapping[str, Any]) -> Any:
    """TRL's `SFTConfig` with this project's defaults under the user's `overrides`; an unknown key is an
    error that suggests the nearest valid one."""
    import torch
    from trl import SFTConfig

    valid = {f.name for f in dataclasses.fields(SFTConfig)}
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SFTDataError(f"trainer.{key} is not an option of trl.SFTConfig{hint}")
    defaults: dict[str, Any] = {
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "gradient_checkpointing": False,
        "report_to": ["tensorboard"],
        "logging_steps": 10,
        "eval_strategy": "steps" if has_eval else "no",
        "save_strategy": "steps",
        "save_total_limit": 2,
        "dataloader_num_workers": 0,
    }
    args = {**defaults, **overrides, "output_dir": str(output_dir), "max_length": max_length}
    return SFTConfig(**args)


def _metrics_callback(path: Path) -> Any:
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):  # type: ignore[misc]
        """Every logged dict as one JSON line, with its step and a timestamp."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                with path.open("a") as f:
                    f.write(json.dumps({"step": state.global_step, "time": time.time(), **logs}) + "\n")

    return MetricsFile()


def _time_limit_callback(seconds: float) -> Any:
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):  # type: ignore[misc]
        """Stops training at the first step end past `seconds` of training (a same-time control run)."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if time.perf_counter() - self.start >= seconds:
                control.should_training_stop = True

    return TimeLimit()


def train_sft(
    model: Any, tokenizer: Any, data: PreparedData, args: Any, *, resume: bool = False,
    max_seconds: float | None = None,
) -> SFTResult:  # fmt: skip
    """Train, evaluate before and after, save the final model and tokenizer to `output_dir/final`.
    With `max_seconds`, training stops at the first step that ends past that many seconds."""
    from datasets import Dataset
    from trl import SFTTrainer

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_ds = Dataset.from_dict(data.eval) if data.eval is not None else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(data.train),
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[_metrics_callback(out / METRICS_FILE)]
        + ([_time_limit_callback(max_seconds)] if max_seconds else []),
    )
    start = time.perf_counter()
    before = trainer.evaluate()["eval_loss"] if eval_ds is not None and not resume else None
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    after = trainer.evaluate()["eval_loss"] if eval_ds is not None else None
    final = out / FINAL_DIR
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    result = SFTResult(
        model_dir=str(final.resolve()),
        steps=trainer.state.global_step,
        seconds=time.perf_counter() - start,
        train_loss=float(output.training_loss),
        eval_loss_before=_finite(before),
        eval_loss_after=_finite(after),
        data=data.stats.line(),
    )
    result.save(out)
    return result


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
