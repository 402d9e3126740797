"""Report how accurate a reward model is against the hidden tests of labelled held-out completions.

    python -m recipes.rm_eval rm=runs/reward_model/final labels=runs/label/heldout.jsonl

Prints the table (`rewards.rm_eval.format_report`) and writes `report.json`, `calibration.png` and
`best_of_n.png` to `output_dir`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from recipes.config import recipe_main
from rewards.problems import read_jsonl
from rewards.rm_eval import OneClassError, Scored, format_report, rm_report, save_plots


def evaluate(model_dir: str, labels: str, output_dir: str | Path, *, max_length: int = 512,
             ns: Sequence[int] = (4, 8), bins: int = 10) -> dict[str, Any]:  # fmt: skip
    from rewards.reward_model import RewardModelScorer

    rows = read_jsonl(labels)
    scorer = RewardModelScorer(model_dir, max_length=max_length)
    scores = scorer.score([r["prompt"] for r in rows], [r["completion"] for r in rows])
    samples = [Scored(str(r["task_id"]), s, bool(r["passed"]), r.get("public_passed"))
               for r, s in zip(rows, scores, strict=True)]  # fmt: skip
    report = rm_report(samples, ns=ns, bins=bins)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_plots(report, out)
    print(format_report(report))
    return report


@recipe_main("rm_eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(
            cfg.rm, cfg.labels, cfg.output_dir, max_length=cfg.max_length, ns=list(cfg.ns), bins=cfg.bins
        )
    except OneClassError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
