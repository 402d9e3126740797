"""Train a reward model on the policy's labelled samples, then report its accuracy on held-out ones.

    python -m recipes.reward_model backbone=runs/sft/final labels=runs/label/labels.jsonl \
        eval_labels=runs/label/heldout.jsonl [head=value objective=bce]
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recipes.common import check_model
from recipes.config import ConfigError, recipe_main
from recipes.rm_eval import evaluate
from rewards.problems import ProblemFormatError
from rewards.reward_model import LabelError, read_labels, train_reward_model
from rewards.rm_eval import OneClassError

RESULT_FILE = "reward_model_result.json"


def run(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    if not cfg.overwrite and ((out / "final").exists() or (out / RESULT_FILE).exists()):
        raise ConfigError(
            f"{out} already holds a reward model (final/); pass overwrite=true to replace it, or choose "
            "another output_dir"
        )
    if cfg.eval_labels and not Path(cfg.eval_labels).is_file():
        raise ConfigError(f"eval_labels={cfg.eval_labels}: no such labels file")
    backbone = check_model(str(cfg.backbone), key="backbone")
    try:
        rows = read_labels(cfg.labels)
    except (OSError, ProblemFormatError) as e:
        raise ConfigError(f"labels={cfg.labels}: {e}") from None
    trainer_args: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    result = train_reward_model(
        backbone, rows, cfg.output_dir, objective=cfg.objective,
        max_length=cfg.max_length, max_pairs_per_problem=cfg.max_pairs_per_problem,
        margin_scale=cfg.margin_scale, trainer_args=trainer_args, seed=cfg.seed, head=cfg.head,
    )  # fmt: skip
    summary: dict[str, Any] = {"train": asdict(result)}
    print(f"reward model: {result.objective} on {result.examples} examples, {result.steps} steps, "
          f"train loss {result.train_loss:.4f}; saved to {result.model_dir}", file=sys.stderr)  # fmt: skip
    if cfg.eval_labels:
        summary["report"] = evaluate(result.model_dir, cfg.eval_labels, Path(cfg.output_dir) / "report",
                                     max_length=cfg.max_length, ns=list(cfg.report.ns), bins=cfg.report.bins)  # fmt: skip
    (out / RESULT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@recipe_main("reward_model")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (LabelError, OneClassError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
