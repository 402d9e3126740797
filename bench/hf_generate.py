"""Group sampling with `HFWorker` (each prompt's prefill run once for its group) against transformers'
own `generate(num_return_sequences=G)` (a copy of the prompt per sample), on the same prompts.

Run: `.venv/bin/python bench/hf_generate.py [--slow]` (`--slow` adds SmolLM2-135M-Instruct on HumanEval
prompts).

Cases, each G = 8 samples per prompt at temperature 1, seeded:
- `tiny` (the demo's SFT model shape, untrained weights) on 16 of the embedded default's chain prompts
  (about 70 tokens), 24 new tokens;
- `tiny` on 16 prompts of 400 tokens, 24 new tokens;
- with `--slow`, SmolLM2-135M-Instruct on the first 4 HumanEval prompts, 24 new tokens.
Both sides take turns, best of 3 each, after a warm-up call each. The baseline gets the worker's own
tokenised, left-padded batch and its sampling options; ours also decodes the texts and slices the
log-probs, which the baseline leaves out. Printed: seconds per call for each and the ratio. No target:
the issue asks for none; this shows what sharing the prefill is worth as prompts grow. The last line
states the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grpo.hf_worker import HFWorker  # noqa: E402
from grpo.rollout import SamplingConfig  # noqa: E402

GROUP, NEW_TOKENS, ROUNDS = 8, 24, 3


def cases(slow: bool) -> list[tuple[str, str, list[str]]]:
    from rewards.chains import generate

    chains = [row["prompt"] for row in generate(split="train", n=16, seed=3)]
    words = ["def", "f", "(", "x", ")", ":", "return", "x", "+", "1", "then", "add", "the", "result"]
    long = [" ".join(words[(i + j) % len(words)] for j in range(400)) for i in range(16)]
    out = [("tiny, 16 chain prompts", "tiny", chains), ("tiny, 16 prompts of 400 tokens", "tiny", long)]
    if slow:
        from rewards import load_problems

        humaneval = [p.prompt for p in load_problems("humaneval")[:4]]
        out.append(("SmolLM2-135M, 4 HumanEval prompts", "smollm2-135m-instruct", humaneval))
    return out


def time_pair(worker: HFWorker, prompts: list[str]) -> tuple[float, float, int]:
    sampling = SamplingConfig(temperature=1.0, max_tokens=NEW_TOKENS, seed=0)
    enc = worker.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def ours() -> None:
        worker.generate(prompts, GROUP, sampling)

    @torch.no_grad()
    def baseline() -> None:
        torch.manual_seed(0)
        worker.model.generate(
            **enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=NEW_TOKENS,
            num_return_sequences=GROUP, return_dict_in_generate=True, output_logits=True,
            pad_token_id=worker.tokenizer.pad_token_id,
        )  # fmt: skip

    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    ours(), baseline()  # warm-up
    for _ in range(ROUNDS):
        for name, fn in (("baseline", baseline), ("ours", ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return min(times["baseline"]), min(times["ours"]), int(enc["input_ids"].shape[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow", action="store_true", help="also SmolLM2-135M-Instruct on HumanEval prompts")
    args = ap.parse_args()
    rows, ratios = [], []
    for name, model, prompts in cases(args.slow):
        worker = HFWorker(model, batch_size=len(prompts))
        base, ours, width = time_pair(worker, prompts)
        ratios.append((name, base / ours))
        rows.append((name, width, base, ours))
    print(f"\n{GROUP} samples per prompt, {NEW_TOKENS} new tokens, best of {ROUNDS} alternating calls each")
    print(f"{'case':<36}{'prompt tokens':>14}{'generate x G (s)':>18}{'HFWorker (s)':>14}{'ratio':>8}")
    for name, width, base, ours in rows:
        print(f"{name:<36}{width:>14}{base:>18.2f}{ours:>14.2f}{base / ours:>7.2f}x")
    summary = ", ".join(f"{name} {r:.2f}x" for name, r in ratios)
    print(f"hf_generate.py: HFWorker vs transformers generate(num_return_sequences): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
