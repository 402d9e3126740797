"""The learner step against TRL's GRPOTrainer training step, generation left out of both.

Run: `.venv/bin/python bench/grpo_step.py [--slow]` (`--slow` adds SmolLM2-135M-Instruct).

Both sides get the same model, the same batch of 16 completions (4 groups of 4) with realistically
varied lengths (completions 8-384 tokens with a long tail; prompts of 96 tokens, because TRL left-pads
prompts, which shifts their position ids and so their log-probs, and equal losses are a target), the
same rewards, loss type
(`dapo`, TRL's default), beta (0.04) and micro-batch size (4), and take one optimizer step per batch:
- ours: `grpo.learner.Learner.step` (sorted micro-batches, each padded to its own longest prompt and
  completion, each prompt run once for its group's completions, log-probs of completion tokens only,
  in chunks), and the same with `share_prompts=False` (a copy of the prompt per completion, as TRL
  runs it) to show what sharing the prompt is worth;
- TRL: `GRPOTrainer.training_step` on its own input layout (prompts left-padded, completions
  right-padded to the batch's longest), over the micro-batches with gradient accumulation, then an
  AdamW step, as its training loop does; the reference log-probs are computed as TRL does before the
  step.
Each side runs in a fresh process (so its peak RSS is its own), taking turns; a
process warms up with one step and then times 3. Printed: seconds per step, trained (completion)
tokens per second, peak RSS, the last loss. Targets: ours >= 1.5x TRL's tokens/s, peak RSS <= TRL's,
and equal loss on the first step. The last line states the tokens-per-second ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS, GROUP_SIZE, MICRO, BETA, LOSS = 4, 4, 4, 0.04, "dapo"
PROMPT_LEN = 96
STEPS, ROUNDS = 3, 2
TARGET = 1.5


def make_batch(vocab: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    prompts, completions, rewards = [], [], []
    for _ in range(GROUPS):
        p = [rng.randrange(10, vocab) for _ in range(PROMPT_LEN)]
        for _ in range(GROUP_SIZE):
            n = min(384, int(rng.paretovariate(1.2) * 24))  # a long tail, as sampled code completions have
            prompts.append(p)
            completions.append([rng.randrange(10, vocab) for _ in range(max(8, n))])
            rewards.append(float(rng.random() < 0.4))
    return {"prompts": prompts, "completions": completions, "rewards": rewards}


def run_ours(model_name: str, share_prompts: bool = True) -> dict:
    from grpo.learner import Learner, LearnerConfig, RolloutBatch
    from grpo.models import load_model

    policy, tok = load_model(model_name)
    data = make_batch(len(tok))
    config = LearnerConfig(
        model=model_name,
        loss_type=LOSS,
        kl_coef=BETA,
        micro_batch_size=MICRO,
        lr=1e-6,
        share_prompts=share_prompts,
    )
    learner = Learner(config, policy=policy)
    batch = RolloutBatch(data["prompts"], data["completions"], data["rewards"], GROUP_SIZE)
    first = learner.step(batch)["loss"]
    start = time.perf_counter()
    for _ in range(STEPS):
        learner.step(batch)
    return result(start, data, first)


def run_trl(model_name: str) -> dict:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from grpo.advantages import group_advantages
    from grpo.models import load_model

    policy, tok = load_model(model_name)
    data = make_batch(len(tok))
    n = len(data["completions"])
    pmax, cmax = max(map(len, data["prompts"])), max(map(len, data["completions"]))
    prompt_ids = torch.zeros((n, pmax), dtype=torch.long)
    prompt_mask = torch.zeros((n, pmax), dtype=torch.long)
    completion_ids = torch.zeros((n, cmax), dtype=torch.long)
    completion_mask = torch.zeros((n, cmax), dtype=torch.long)
    for i, (p, c) in enumerate(zip(data["prompts"], data["completions"], strict=True)):
        prompt_ids[i, pmax - len(p) :], prompt_mask[i, pmax - len(p) :] = torch.tensor(p), 1  # left-padded
        completion_ids[i, : len(c)], completion_mask[i, : len(c)] = torch.tensor(c), 1
    advantages = group_advantages(torch.tensor(data["rewards"]), GROUP_SIZE)
    args = GRPOConfig(
        output_dir="/tmp/grpo-step-bench", per_device_train_batch_size=MICRO, num_generations=GROUP_SIZE, beta=BETA,
        loss_type=LOSS, max_completion_length=cmax, use_cpu=True, report_to="none", bf16=False,
        gradient_accumulation_steps=n // MICRO, learning_rate=1e-6,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=policy, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=args,
        train_dataset=Dataset.from_dict({"prompt": ["x"]}), processing_class=tok,
    )  # fmt: skip
    trainer.current_gradient_accumulation_steps = n // MICRO
    reference = trainer.ref_model  # TRL builds its own frozen copy when beta > 0
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    attention = torch.cat([prompt_mask, completion_mask], 1)

    def step() -> float:
        with torch.no_grad():  # TRL computes the reference log-probs in _generate_and_score_completions
            ref, _, _ = trainer._get_per_token_logps_and_entropies(
                reference, input_ids, attention, cmax, MICRO
            )
        total = 0.0
        optimizer.zero_grad(set_to_none=True)
        for s in range(0, n, MICRO):
            inputs = {
                "prompt_ids": prompt_ids[s : s + MICRO], "prompt_mask": prompt_mask[s : s + MICRO],
                "completion_ids": completion_ids[s : s + MICRO], "completion_mask": completion_mask[s : s + MICRO],
                "advantages": advantages[s : s + MICRO], "ref_per_token_logps": ref[s : s + MICRO],
                "num_items_in_batch": completion_mask.sum(),
            }  # fmt: skip
            loss = trainer.compute_loss(policy, inputs)
            loss.backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        return total

    policy.train()
    first = step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    return result(start, data, first)


def result(start: float, data: dict, first_loss: float) -> dict:
    seconds = (time.perf_counter() - start) / STEPS
    tokens = sum(map(len, data["completions"]))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "rss_mb": rss,
        "loss": first_loss,
        "tokens": tokens,
    }


def child(side: str, model: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, "--model", model],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"{side} on {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(model: str) -> float:
    runs: dict[str, list[dict]] = {"ours": [], "ours-copies": [], "trl": []}
    for _ in range(ROUNDS):
        for side in runs:
            runs[side].append(child(side, model))
    best = {side: max(r, key=lambda x: x["tokens_per_s"]) for side, r in runs.items()}
    o, t = best["ours"], best["trl"]
    copies = best["ours-copies"]
    ratio = o["tokens_per_s"] / t["tokens_per_s"]
    print(f"\n{model}: {GROUPS} groups x {GROUP_SIZE}, {o['tokens']} completion tokens, micro-batch {MICRO}, "
          f"{LOSS}, beta {BETA}; best of {ROUNDS} processes x {STEPS} timed steps")  # fmt: skip
    print(f"{'learner':<34}{'s/step':>9}{'tokens/s':>11}{'peak RSS MB':>13}{'loss':>12}")
    for name, r in (
        ("TRL GRPOTrainer (baseline)", t),
        ("Learner, share_prompts=False", copies),
        ("grpo.learner.Learner", o),
    ):
        print(
            f"{name:<34}{r['seconds']:>9.3f}{r['tokens_per_s']:>11.1f}{r['rss_mb']:>13.0f}{r['loss']:>12.6f}"
        )
    rss_ok = o["rss_mb"] <= t["rss_mb"]
    loss_ok = abs(o["loss"] - t["loss"]) <= 1e-4 * max(1.0, abs(t["loss"]))
    print(f"ratios: tokens/s {ratio:.2f}x ({'pass' if ratio >= TARGET else 'FAIL'}, target >= {TARGET}x); "
          f"peak RSS {o['rss_mb'] / t['rss_mb']:.2f}x ({'pass' if rss_ok else 'FAIL'}, target <= 1); "
          f"loss {'equal' if loss_ok else 'DIFFERENT'}")  # fmt: skip
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["ours", "ours-copies", "trl"])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--slow", action="store_true", help="also SmolLM2-135M-Instruct")
    args = ap.parse_args()
    if args.child:
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if args.child == "trl":
            print(json.dumps(run_trl(args.model)))
        else:
            print(json.dumps(run_ours(args.model, share_prompts=args.child == "ours")))
        return 0
    ratios = {m: bench(m) for m in ["tiny", *(["smollm2-135m-instruct"] if args.slow else [])]}
    summary = ", ".join(f"{m} {r:.2f}x" for m, r in ratios.items())
    print(f"grpo_step.py: learner tokens/s vs TRL GRPOTrainer: {summary} (target {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
