"""What `make demo` runs: the pipeline (`recipes.pipeline`) on the embedded CPU default, for one seed or
several, then the mean and spread of the held-out pass@1 over the seeds.

    python -m recipes.demo                       # seed 0, into runs/demo/seed-0
    python -m recipes.demo --seeds 3             # seeds 0, 1, 2, then mean and spread
    python -m recipes.demo --seeds 3 -- 'rewards=[blend]' stages.grpo='[steps=80]'   # pipeline overrides

Each seed is a fresh `python -m recipes.pipeline` process (a rerun continues a seed that was killed;
`--overwrite` starts it over). The last line has the pipeline's form, with means over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--overwrite", action="store_true", help="start every seed over")
    parser.add_argument("overrides", nargs="*", help="passed to recipes.pipeline")
    args = parser.parse_args()

    summaries = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        out = args.out / f"seed-{seed}"
        cmd = [sys.executable, "-m", "recipes.pipeline", f"seed={seed}", f"output_dir={out}", *args.overrides]
        if args.overwrite:
            cmd.append("overwrite=true")
        print(f"== demo: seed {seed}: {' '.join(cmd[1:])}", flush=True)
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            raise SystemExit(
                f"error: the pipeline for seed {seed} failed (exit {done.returncode}); see above"
            )
        summaries.append(json.loads((out / "summary.json").read_text()))
    if len(summaries) > 1:
        print(f"\n== demo: {len(summaries)} seeds in {time.perf_counter() - start:.0f}s")
        print("\n".join(seed_table(summaries)))


def seed_table(summaries: list[dict]) -> list[str]:
    def stats(key: str) -> tuple[float, float]:
        xs = [s["pass@1"][key] for s in summaries]
        return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    lines = [f"{'seed':<6}{'SFT':>8}{'GRPO':>8}{'control':>9}{'GRPO - SFT':>12}{'GRPO - control':>16}"
             f"{'RM pairwise':>13}"]  # fmt: skip
    for i, s in enumerate(summaries):
        p = s["pass@1"]
        rm = s.get("reward_model", {}).get("pairwise_accuracy")
        lines.append(f"{i:<6}{p['sft']:>8.3f}{p['grpo']:>8.3f}{p.get('control', float('nan')):>9.3f}"
                     f"{100 * (p['grpo'] - p['sft']):>+12.1f}{100 * (p['grpo'] - p.get('control', float('nan'))):>+16.1f}"
                     f"{'n/a' if rm is None else f'{rm:.3f}':>13}")  # fmt: skip
    (sft, sft_sd), (grpo, grpo_sd) = stats("sft"), stats("grpo")
    gains = [100 * (s["pass@1"]["grpo"] - s["pass@1"]["sft"]) for s in summaries]
    lines.append(f"mean ± sd: SFT {sft:.3f} ± {sft_sd:.3f}, GRPO {grpo:.3f} ± {grpo_sd:.3f}, "
                 f"gain {points(statistics.mean(gains))} ± {statistics.stdev(gains):.1f} points")  # fmt: skip
    last = f"held-out pass@1: SFT {sft:.2f} -> GRPO {grpo:.2f} ({points(statistics.mean(gains))} points)"
    if all("control" in s["pass@1"] for s in summaries):
        control, _ = stats("control")
        over = [100 * (s["pass@1"]["grpo"] - s["pass@1"]["control"]) for s in summaries]
        last += f"; same-time SFT-only {control:.2f} (GRPO {points(statistics.mean(over))} points over it)"
    lines.append(last)
    return lines


def points(x: float) -> str:
    """A signed difference to one decimal; a mean that is 0 up to rounding reads +0.0, not -0.0."""
    return f"{round(x, 1) or 0.0:+.1f}"


if __name__ == "__main__":
    main()
