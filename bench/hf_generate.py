"""Group sampling with `HFWorker` (each prompt's prefill run once for its group) against transformers'
own `generate(num_return_sequences=G)` (a copy of the prompt per sample), on the same prompts; and
`HFWorker` with `grpo.models.CPU_GQA_ATTENTION` (what `load_model` gives a grouped-query model on the
CPU) against the same worker with transformers' `sdpa` attention, which copies the key/value heads to
one per query head at every layer of every decoding step.

Run: `.venv/bin/python bench/hf_generate.py [--slow]` (`--slow` adds SmolLM2-135M-Instruct on HumanEval
prompts).

Cases, each G = 8 samples per prompt at temperature 1, seeded:
- `tiny` (the demo's SFT model shape, untrained weights) on 16 of the embedded default's chain prompts
  (about 70 tokens), 24 new tokens;
- `tiny` on 16 prompts of 400 tokens, 24 new tokens;
- with `--slow`, SmolLM2-135M-Instruct on the first 4 HumanEval prompts, 24 new tokens.
Both sides take turns, best of 3 each, after a warm-up call each. The baseline gets the worker's own
tokenised, left-padded batch and its sampling options; ours also decodes the texts and slices the
log-probs, which the baseline leaves out. The attention case is the demo's GRPO sampling: 16 chain
prompts x 8, up to 96 new tokens (untrained weights run to the limit). Printed: seconds per call for
each and the ratio. No target: the issue asks for none; this shows what sharing the prefill is worth as
prompts grow, and what the attention function is worth. The last line states the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grpo.hf_worker import HFWorker  # noqa: E402
from grpo.models import CPU_GQA_ATTENTION  # noqa: E402
from grpo.rollout import SamplingConfig  # noqa: E402

GROUP, NEW_TOKENS, ROUNDS = 8, 24, 3
DEMO_NEW_TOKENS = 96


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


def best_of(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best of ROUNDS alternating calls of each, after a warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def time_attention(prompts: list[str]) -> tuple[float, float]:
    """Seconds per demo-shaped sampling call: transformers' `sdpa`, then `CPU_GQA_ATTENTION`."""
    sampling = SamplingConfig(temperature=1.0, max_tokens=DEMO_NEW_TOKENS, stop=("\ndef ",), seed=0)
    ours = HFWorker("tiny", batch_size=len(prompts))
    assert ours.model.config._attn_implementation == CPU_GQA_ATTENTION
    theirs = HFWorker("tiny", batch_size=len(prompts))
    theirs.model.set_attn_implementation("sdpa")
    t = best_of(
        {
            "sdpa": lambda: theirs.generate(prompts, GROUP, sampling),
            "gqa": lambda: ours.generate(prompts, GROUP, sampling),
        }
    )
    return t["sdpa"], t["gqa"]


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

    t = best_of({"baseline": baseline, "ours": ours})
    return t["baseline"], t["ours"], int(enc["input_ids"].shape[1])


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
    chains = cases(False)[0][2]
    sdpa, gqa = time_attention(chains)
    print(
        f"\nThe demo's GRPO sampling (tiny, 16 chain prompts x {GROUP}, up to {DEMO_NEW_TOKENS} new tokens)"
    )
    print(f"{'attention':<36}{'seconds per call':>18}")
    print(f"{'transformers sdpa (repeat_kv)':<36}{sdpa:>18.2f}")
    print(f"{CPU_GQA_ATTENTION + ' (grpo.models)':<36}{gqa:>18.2f}")
    summary = ", ".join(f"{name} {r:.2f}x" for name, r in ratios)
    print(
        f"hf_generate.py: HFWorker vs transformers generate(num_return_sequences): {summary}; "
        f"{CPU_GQA_ATTENTION} vs transformers sdpa on the demo's sampling {sdpa / gqa:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
