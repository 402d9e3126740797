"""A reward model trained on execution feedback: a backbone with a scalar head, scoring (prompt, completion).

Labelled rows come from `recipes.label`: the policy's own completions with the sandbox's verdict on
them (`task_id, prompt, completion, passed, pass_fraction, ...`). Objectives:

- `bce`: pointwise binary cross-entropy on `passed` (transformers' `Trainer`, a sequence-classification
  head with one label and `problem_type="multi_label_classification"`); sigmoid(score) estimates the
  pass probability, so calibration is meaningful;
- `regression`: pointwise mean squared error on `pass_fraction`;
- `bradley_terry`: pairwise, a passing completion against a failing one of the same problem, with TRL's
  `RewardTrainer` (`-log sigmoid(r_pass - r_fail - margin)`); `margin_scale` times the difference in
  pass fractions is the optional margin.

The backbone is any causal LM folder (the SFT policy, or a smaller model). Heads:

- `value`: the LM head is replaced by a fresh scalar head (`AutoModelForSequenceClassification`, score
  at the last token);
- `likelihood`: the LM head is kept, and the score is the completion's mean log-likelihood (times a
  learned scale) plus a value head (`rewards.likelihood_rm`, which says why).

The model is saved as an HF folder with its tokenizer, and `RewardModelScorer` loads either kind to
score completions.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rewards.problems import read_jsonl

Objective = Literal["bce", "regression", "bradley_terry"]
OBJECTIVES = ("bce", "regression", "bradley_terry")
HEADS = ("value", "likelihood")
# TrainingArguments options the likelihood head's own loop reads (a cosine schedule is its only one).
LIKELIHOOD_TRAINER_KEYS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "learning_rate",
                           "warmup_steps", "logging_steps", "lr_scheduler_type", "disable_tqdm")  # fmt: skip
LABEL_FIELDS = ("task_id", "prompt", "completion", "passed", "pass_fraction")


class LabelError(ValueError):
    """A labelled row or set that cannot train a reward model; the message says which and why."""


@dataclass(frozen=True)
class Labelled:
    task_id: str
    prompt: str
    completion: str
    passed: bool
    pass_fraction: float


def parse_labels(rows: Sequence[Mapping[str, Any]], where: str = "labels") -> list[Labelled]:
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in LABEL_FIELDS if f not in row]
        if missing:
            raise LabelError(f"{where} row {i} lacks {', '.join(missing)} (fields: {', '.join(sorted(row))})")
        if row.get("verdict") == "sandbox_error":
            raise LabelError(f"{where} row {i} ({row['task_id']}) has verdict sandbox_error: the grader failed, "
                             "so it is no label; relabel it")  # fmt: skip
        out.append(Labelled(str(row["task_id"]), row["prompt"], row["completion"], bool(row["passed"]),
                            float(row["pass_fraction"])))  # fmt: skip
    if not out:
        raise LabelError(f"{where} has no rows")
    return out


def read_labels(path: str | Path) -> list[Labelled]:
    return parse_labels(read_jsonl(path), str(path))


@dataclass
class PairStats:
    pairs: int = 0
    problems: int = 0
    skipped_fewer_than_two: int = 0
    skipped_one_class: int = 0


def preference_pairs(
    rows: Sequence[Labelled], *, max_pairs_per_problem: int = 16, margin_scale: float = 0.0, seed: int = 0
) -> tuple[list[tuple[Labelled, Labelled, float]], PairStats]:
    """(chosen = passing, rejected = failing, margin) pairs within each problem, at most
    `max_pairs_per_problem` of them, drawn with a seed. Problems without such a pair are counted."""
    rng = random.Random(seed)
    groups: dict[str, list[Labelled]] = defaultdict(list)
    for r in rows:
        groups[r.task_id].append(r)
    stats = PairStats()
    pairs = []
    for group in groups.values():
        if len(group) < 2:
            stats.skipped_fewer_than_two += 1
            continue
        good = [r for r in group if r.passed]
        bad = [r for r in group if not r.passed]
        if not good or not bad:
            stats.skipped_one_class += 1
            continue
        every = [(g, b) for g in good for b in bad]
        chosen = rng.sample(every, min(len(every), max_pairs_per_problem))
        pairs += [(g, b, margin_scale * (g.pass_fraction - b.pass_fraction)) for g, b in chosen]
        stats.problems += 1
    stats.pairs = len(pairs)
    return pairs, stats


def check_classes(rows: Sequence[Labelled], objective: str) -> None:
    passed = sum(r.passed for r in rows)
    if objective in ("bce", "bradley_terry") and passed in (0, len(rows)):
        which = "pass" if passed else "fail"
        raise LabelError(
            f"all {len(rows)} labelled completions {which}: a {objective} reward model needs both passing and "
            "failing ones (sample more per problem, at a higher temperature, or from harder/easier problems)"
        )


def _ids(tokenizer: Any, prompt: str, completion: str, max_length: int) -> list[int]:
    ids: list[int] = list(tokenizer(prompt + completion)["input_ids"])
    return ids[-max_length:]  # keep the end: the score is read at the last token


def load_backbone(path: str | Path, objective: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification

    from rewards.likelihood_rm import padded_tokenizer

    tokenizer = padded_tokenizer(path)
    problem_type = {"bce": "multi_label_classification", "regression": "regression"}.get(objective)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32, problem_type=problem_type
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


@dataclass
class TrainResult:
    model_dir: str
    objective: str
    examples: int
    steps: int
    train_loss: float
    pairs: PairStats | None = None


def train_reward_model(
    backbone: str | Path,
    rows: Sequence[Labelled],
    output_dir: str | Path,
    *,
    objective: Objective = "bce",
    max_length: int = 512,
    max_pairs_per_problem: int = 16,
    margin_scale: float = 0.0,
    trainer_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    head: str = "value",
) -> TrainResult:
    """Train and save `output_dir/final`; `trainer_args` are `TrainingArguments` (TRL's `RewardConfig`
    for `bradley_terry`) options."""
    import torch
    from datasets import Dataset

    if objective not in OBJECTIVES:
        raise LabelError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if head not in HEADS:
        raise LabelError(f"head {head!r} is not one of {', '.join(HEADS)}")
    check_classes(rows, objective)
    if head == "likelihood":
        return _train_likelihood(backbone, rows, output_dir, objective, max_length, max_pairs_per_problem,
                                 margin_scale, dict(trainer_args or {}), seed)  # fmt: skip
    model, tokenizer = load_backbone(backbone, objective)
    out = Path(output_dir)
    defaults: dict[str, Any] = {
        "output_dir": str(out),
        "report_to": ["tensorboard"],
        "save_strategy": "no",
        "logging_steps": 10,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "seed": seed,
        "disable_tqdm": False,
    }
    args_dict = {**defaults, **(trainer_args or {})}
    stats = None
    if objective == "bradley_terry":
        from trl.trainer.reward_config import RewardConfig
        from trl.trainer.reward_trainer import RewardTrainer

        pairs, stats = _training_pairs(rows, max_pairs_per_problem, margin_scale, seed)
        data: dict[str, list[Any]] = {
            "chosen_ids": [_ids(tokenizer, g.prompt, g.completion, max_length) for g, _, _ in pairs],
            "rejected_ids": [_ids(tokenizer, b.prompt, b.completion, max_length) for _, b, _ in pairs],
        }
        if margin_scale:
            data["margin"] = [m for _, _, m in pairs]
        trainer: Any = RewardTrainer(
            model=model,
            args=RewardConfig(**{**args_dict, "max_length": max_length, "gradient_checkpointing": False}),
            train_dataset=Dataset.from_dict(data),
            processing_class=tokenizer,
        )
        n = len(pairs)
    else:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        labels = [float(r.passed) if objective == "bce" else r.pass_fraction for r in rows]
        dataset = Dataset.from_dict({
            "input_ids": [_ids(tokenizer, r.prompt, r.completion, max_length) for r in rows],
            "labels": [[y] for y in labels],
        })  # fmt: skip
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**args_dict),
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        n = len(rows)
    output = trainer.train()
    final = out / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    return TrainResult(str(final.resolve()), objective, n, trainer.state.global_step, float(output.training_loss),
                       stats)  # fmt: skip


def _training_pairs(
    rows: Sequence[Labelled], max_pairs_per_problem: int, margin_scale: float, seed: int
) -> tuple[list[tuple[Labelled, Labelled, float]], PairStats]:
    pairs, stats = preference_pairs(rows, max_pairs_per_problem=max_pairs_per_problem,
                                    margin_scale=margin_scale, seed=seed)  # fmt: skip
    if not pairs:
        raise LabelError(f"no (pass, fail) pair within any problem: {dataclasses.asdict(stats)}")
    return pairs, stats


def _train_likelihood(backbone: str | Path, rows: Sequence[Labelled], output_dir: str | Path, objective: str,
                      max_length: int, max_pairs_per_problem: int, margin_scale: float, args: dict[str, Any],
                      seed: int) -> TrainResult:  # fmt: skip
    from rewards import likelihood_rm

    unknown = sorted(set(args) - set(LIKELIHOOD_TRAINER_KEYS))
    if unknown or args.get("lr_scheduler_type", "cosine") != "cosine":
        raise LabelError(f"head=likelihood trains with its own loop, which reads only trainer."
                         f"{{{','.join(LIKELIHOOD_TRAINER_KEYS)}}} (cosine schedule); not: "
                         f"{', '.join(unknown) or 'lr_scheduler_type=' + str(args['lr_scheduler_type'])}")  # fmt: skip
    model, tokenizer = likelihood_rm.build(backbone)

    def enc(r: Labelled) -> tuple[list[int], int]:
        return likelihood_rm.encode(tokenizer, r.prompt, r.completion, max_length)

    stats = None
    if objective == "bradley_terry":
        pairs, stats = _training_pairs(rows, max_pairs_per_problem, margin_scale, seed)
        examples: list[tuple[tuple[list[int], int], ...]] = [(enc(g), enc(b)) for g, b, _ in pairs]
        targets = [m for _, _, m in pairs]
    else:
        examples = [(enc(r),) for r in rows]
        targets = [float(r.passed) if objective == "bce" else r.pass_fraction for r in rows]
    batch_size = int(args.get("per_device_train_batch_size", 16))
    steps, loss = likelihood_rm.train(
        model, tokenizer, examples, targets, objective, output_dir, epochs=float(args.get("num_train_epochs", 3)),
        max_steps=int(args.get("max_steps", -1)), batch_size=batch_size,
        learning_rate=float(args.get("learning_rate", 1e-5)), warmup_steps=int(args.get("warmup_steps", 10)),
        logging_steps=int(args.get("logging_steps", 10)), seed=seed,
    )  # fmt: skip
    final = Path(output_dir) / "final"
    model.save(final, tokenizer)
    return TrainResult(str(final.resolve()), objective, len(examples), steps, loss, stats)


class RewardModelScorer:
    """Scores (prompt, completion) pairs with a saved reward model, in batches."""

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_length: int = 512, device: str = "cpu"):
        import torch
        from transformers import AutoModelForSequenceClassification

        from rewards import likelihood_rm

        self.batch_size, self.max_length, self.device = batch_size, max_length, device
        self.likelihood = likelihood_rm.is_likelihood_model(path)
        if self.likelihood:
            self.model, self.tokenizer = likelihood_rm.load(path, device)
            return
        self.tokenizer = likelihood_rm.padded_tokenizer(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).to(device)
        self.model.eval()

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        import torch

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        if self.likelihood:
            from rewards import likelihood_rm

            return likelihood_rm.score(self.model, self.tokenizer, prompts, completions,
                                       batch_size=self.batch_size, max_length=self.max_length, device=self.device)  # fmt: skip
        ids = [_ids(self.tokenizer, p, c, self.max_length) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            width = max(map(len, chunk))
            batch = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=self.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=self.device)
            with torch.no_grad():
                scores += self.model(input_ids=batch, attention_mask=mask).logits[:, 0].tolist()
        return scores
