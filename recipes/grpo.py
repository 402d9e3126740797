"""GRPO, the single controller: sample groups, grade them in the sandbox, reward, learn, sync, log.

    python -m recipes.grpo policy=runs/sft/final
    python -m recipes.grpo policy=runs/sft/final rollout=ray_vllm reward=blend reward.model=runs/rm/final

Reads top to bottom:
1. refuse to clobber a run, or find the checkpoint to resume from;
2. build the learner, the rollout (workers and graders, in this process or on Ray) and the reward;
3. loop: sample groups -> grade -> reward -> advantages and learner step -> weight sync -> log ->
   checkpoint; Ctrl-C finishes the step it is in, saves a checkpoint of it and exits with status 130;
4. save `final/` (HF format, with the tokenizer) and `grpo_result.json`.

Prompts come from `train_problems` in order, `prompts_per_step` per step (wrapping around when the steps
need more); step `i` samples with seed `seed + i`, so a resumed run sees the prompts and seeds an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from grpo.learner import Learner, LearnerConfig, RolloutBatch
from recipes.common import check_fresh_output, check_model, read_problems, sampling_config
from recipes.config import ConfigError, checked_dataclass, recipe_main, refuse_contradictions, require_counts
from recipes.iterative import IterativeRewardModel
from recipes.rollouts import build_rollout
from recipes.tracking import METRICS_FILE, TRACKERS_FILE, RunLog, metrics_line, read_jsonl, require_loggers
from rewards import Problem
from rewards.blend import combine

RESULT_FILE = "grpo_result.json"
OUTPUTS = (
    "final",
    "metrics.jsonl",
    "samples.jsonl",
    "samples.html",
    "plots",
    "runs",
    TRACKERS_FILE,
    RESULT_FILE,
)
SHOWN = ("reward/mean", "pass_rate", "loss/kl", "loss/clip_frac", "batch/zero_variance_frac", "time/step_s")


def run(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    check_fresh_output(out, RESULT_FILE, resume=cfg.resume, overwrite=cfg.overwrite, what="GRPO")
    refuse_contradictions(cfg)
    if cfg.resume and not cfg.overwrite and (out / RESULT_FILE).exists():
        print(
            f"grpo: {out} holds a finished run; nothing to resume (overwrite=true to start over)",
            file=sys.stderr,
        )
        return dict(json.loads((out / RESULT_FILE).read_text()))
    require_counts(cfg, "steps", "prompts_per_step")
    require_loggers(cfg.logger.loggers)  # a missing tracker package fails now, not after the set-up
    policy = check_model(str(cfg.policy))
    problems = read_problems(cfg.train_problems, key="train_problems")
    if cfg.reward.kind != "rm":
        untested = [p.task_id for p in problems if p.format in ("call", "stdio") and not p.tests]
        if untested:
            raise ConfigError(
                f"train_problems: {len(untested)} problems have no public tests for the execution reward "
                f"(first: {untested[0]}); give them tests, or train on reward=rm"
            )
    algorithm: dict[str, Any] = OmegaConf.to_container(cfg.algorithm, resolve=True)  # type: ignore[assignment]
    config = checked_dataclass(
        LearnerConfig, algorithm | {"model": str(policy), "total_steps": cfg.steps}, "algorithm"
    )
    if cfg.overwrite and not cfg.resume:  # only once the inputs are known to be good
        clear_outputs(out)
    resume_from = last_checkpoint(out) if cfg.resume else None

    # -- build -----------------------------------------------------------------------------------------
    iterative = None
    if cfg.reward.kind != "execution" and cfg.reward.iterative.every:
        iterative = IterativeRewardModel(cfg.reward, out, start_step=_step_of(resume_from), seed=cfg.seed)
        reference = (
            iterative.last_reference(_step_of(resume_from)) if cfg.reward.iterative.reset_reference else None
        )
        if reference is not None:  # the policy of the last reset before the checkpoint
            config = dataclasses.replace(config, reference=str(reference))
    if resume_from is not None:
        learner, position = Learner.resume(resume_from, config)
        start = int(position["step"])
        print(f"grpo: resuming {out} at step {start} from {resume_from.name}", file=sys.stderr)
    else:
        learner, start = Learner(config), 0
    tokenizer = load_tokenizer(config.model)
    grader_spec: dict[str, Any] = OmegaConf.to_container(cfg.grader, resolve=True)  # type: ignore[assignment]
    weights = str(resume_from or config.model)
    rollout_spec: dict[str, Any] = OmegaConf.to_container(cfg.rollout, resolve=True)  # type: ignore[assignment]
    rollout = build_rollout(rollout_spec, weights, functools.partial(instantiate, grader_spec))
    try:
        scorer = make_scorer(
            cfg.reward, on_ray=cfg.rollout.kind == "ray", model=iterative.model if iterative else None
        )
    except BaseException:
        rollout.close()
        raise
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    log = RunLog(out, loggers=list(cfg.logger.loggers), config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
                 resume_step=start if resume_from else None)  # fmt: skip
    print(f"grpo: {cfg.steps} steps of {cfg.prompts_per_step} prompts x {cfg.group_size} samples, "
          f"{len(problems)} problems, rollout {cfg.rollout.kind}/{cfg.rollout.engine}, reward {cfg.reward.kind}",
          file=sys.stderr)  # fmt: skip

    # -- loop ------------------------------------------------------------------------------------------
    began = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, desc="grpo", file=sys.stderr, dynamic_ncols=True)
    failed = True  # until the loop ends: a crash or a Ctrl-C marks the trackers' runs failed
    try:
        with StopAtStepEnd() as stop:
            for step in range(start, cfg.steps):
                t0 = time.perf_counter()
                chunk = prompts_for_step(problems, step, cfg.prompts_per_step)
                sampling = sampling_config(cfg.sampling, seed=cfg.seed + step)
                groups, grades, timing = rollout.sample_and_grade(chunk, cfg.group_size, sampling)
                completions = [c for g in groups for c in g.completions]
                flat_grades = [g for gs in grades for g in gs]
                execution = [g.reward for g in flat_grades]
                rm = None
                if scorer is not None:
                    prompts = [g.prompt for g in groups for _ in g.completions]
                    rm = scorer.score(prompts, [c.text for c in completions])
                rewards = combine(cfg.reward.kind, execution, rm, cfg.group_size, cfg.reward.alpha)
                batch = RolloutBatch(
                    prompt_ids=[g.prompt_token_ids for g in groups for _ in g.completions],
                    completion_ids=[c.token_ids for c in completions],
                    rewards=rewards,
                    group_size=cfg.group_size,
                    sampling_logprobs=[c.logprobs for c in completions],
                    truncated=[c.finish_reason == "length" for c in completions],
                )
                t1 = time.perf_counter()
                metrics = learner.step(batch)
                t2 = time.perf_counter()
                metrics |= rollout.load_weights(learner.policy.named_parameters())
                metrics |= timing | batch_metrics(batch, flat_grades, execution, rm)
                done = step + 1
                if iterative is not None:  # relabel with the current policy's samples; retrain every K steps
                    iterative.add(done, chunk, groups, grades)
                    if iterative.due(done) and done < cfg.steps:
                        t3 = time.perf_counter()
                        metrics |= iterative.retrain(done)
                        if iterative.model != scorer_model(scorer):
                            if hasattr(scorer, "shutdown"):
                                scorer.shutdown()
                            scorer = make_scorer(
                                cfg.reward, on_ray=cfg.rollout.kind == "ray", model=iterative.model
                            )
                        if cfg.reward.iterative.reset_reference:
                            learner.reset_reference()
                            learner.policy.save_pretrained(iterative.reference_dir(done))
                        metrics["time/rm_retrain_s"] = time.perf_counter() - t3
                metrics |= {"time/learner_s": t2 - t1, "time/step_s": time.perf_counter() - t0}
                log.metrics(done, metrics)
                if cfg.samples_every and (done % cfg.samples_every == 0 or done == 1):
                    log.samples(done, sample_rows(chunk, groups, grades, rewards, rm, cfg.samples_per_log))
                bar.update(1)
                if cfg.log_every and done % cfg.log_every == 0:
                    bar.write(metrics_line(done, cfg.steps, metrics, SHOWN), file=sys.stderr)
                if stop.requested and done < cfg.steps:
                    path = save_checkpoint(learner, tokenizer, out, done, cfg.keep_checkpoints)
                    bar.write(f"grpo: interrupted; step {done} saved to {path}; continue with resume=true",
                              file=sys.stderr)  # fmt: skip
                    raise SystemExit(130)
                if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
                    save_checkpoint(learner, tokenizer, out, done, cfg.keep_checkpoints)
        failed = False
    finally:
        bar.close()
        rollout.close()
        if hasattr(scorer, "shutdown"):
            scorer.shutdown()
        log.close(failed=failed)

    # -- final -----------------------------------------------------------------------------------------
    final = out / "final"
    learner.policy.save_pretrained(final)
    tokenizer.save_pretrained(final)
    result = {
        "final": str(final.resolve()),
        "steps": cfg.steps,
        "resumed_at": start if resume_from else None,
        "seconds": time.perf_counter() - began,
        "last_metrics": last_metrics(out),
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


class StopAtStepEnd:
    """The first Ctrl-C (SIGINT) asks the loop to stop after the step it is in, with a checkpoint of that
    step; a second one interrupts at once (Python's default)."""

    requested = False

    def __enter__(self) -> StopAtStepEnd:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\ngrpo: Ctrl-C: stopping after this step with a checkpoint (again to stop now)", file=sys.stderr
        )

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


# -- pieces of the loop --------------------------------------------------------------------------------
def prompts_for_step(problems: list[Problem], step: int, n: int) -> list[Problem]:
    start = step * n
    return [problems[(start + j) % len(problems)] for j in range(n)]


def batch_metrics(
    batch: RolloutBatch, grades: list[Any], execution: list[float], rm: list[float] | None
) -> dict[str, float]:
    n, g = len(grades), batch.group_size
    verdicts = Counter(grade.verdict for grade in grades)
    grouped = [batch.rewards[i : i + g] for i in range(0, n, g)]
    metrics = {
        "pass_rate": verdicts["passed"] / n,
        "reward/execution_mean": sum(execution) / n,
        "completion/length_mean": sum(map(len, batch.completion_ids)) / n,
        "completion/truncated_frac": sum(batch.truncated or []) / n,
        "batch/zero_variance_frac": sum(max(r) == min(r) for r in grouped) / len(grouped),
    }
    metrics |= {f"verdict/{v}": c / n for v, c in verdicts.items()}
    if rm is not None:
        metrics["reward/rm_mean"] = sum(rm) / n
    return metrics


def sample_rows(
    problems: list[Problem], groups: list[Any], grades: list[list[Any]], rewards: list[float],
    rm: list[float] | None, k: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """The completions of the first `k` problems, with why each got its reward."""
    rows: list[dict[str, Any]] = []
    for i, (problem, group, gs) in enumerate(zip(problems[:k], groups, grades, strict=False)):
        for j, (c, grade) in enumerate(zip(group.completions, gs, strict=True)):
            rows.append({
                "task_id": problem.task_id, "prompt": problem.prompt, "completion": c.text,
                "reward": rewards[i * len(gs) + j], "verdict": grade.verdict, "tests_passed": grade.tests_passed,
                "tests_total": grade.tests_total, "failure": grade.to_row()["failure"],
                "finish_reason": c.finish_reason,
            })  # fmt: skip
            if rm is not None:
                rows[-1]["rm_score"] = rm[i * len(gs) + j]
    return rows


def make_scorer(spec: DictConfig, on_ray: bool, model: str | None = None) -> Any:
    """The reward model's scorer: in this process, or in its own Ray actor(s) when the rollout is on Ray.
    `model` replaces spec.model (an iterative run's latest reward model)."""
    if spec.kind == "execution":
        return None
    from rewards.reward_model import RewardModelScorer

    path = Path(str(model or spec.model))
    if not path.exists():
        raise ConfigError(
            f"reward.model={path} does not exist (train one with python -m recipes.reward_model)"
        )
    if not on_ray:
        scorer: Any = RewardModelScorer(path, batch_size=spec.batch_size)
    else:
        from grpo.ray_pool import PoolConfig, RayScorer

        actors: dict[str, Any] = OmegaConf.to_container(spec.scorer_actors, resolve=True)  # type: ignore[assignment]
        scorer = RayScorer(
            functools.partial(RewardModelScorer, path, batch_size=spec.batch_size), PoolConfig(**actors)
        )
    scorer.model_path = str(path)
    return scorer


def scorer_model(scorer: Any) -> str | None:
    return getattr(scorer, "model_path", None)


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.removeprefix("checkpoint-")) if checkpoint is not None else 0


def load_tokenizer(model: str) -> Any:
    from grpo.models import load_model

    return load_model(model)[1]


# -- checkpoints -----------------------------------------------------------------------------------------
def save_checkpoint(learner: Learner, tokenizer: Any, out: Path, step: int, keep: int) -> Path:
    """`checkpoint-{step}`, written beside and then renamed, so a kill mid-write leaves the last one whole."""
    path = out / f"checkpoint-{step}"
    partial = out / f".checkpoint-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    learner.save(partial, tokenizer, data_position={"step": step})
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    for old in checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return path


def checkpoints(out: Path) -> list[Path]:
    found = [p for p in out.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def last_checkpoint(out: Path) -> Path | None:
    found = checkpoints(out)
    if not found:
        print(f"grpo: resume=true but {out} has no checkpoint; starting from step 0", file=sys.stderr)
        return None
    return found[-1]


def clear_outputs(out: Path) -> None:
    for p in [*checkpoints(out), *(out / name for name in OUTPUTS)]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def last_metrics(out: Path) -> dict[str, Any]:
    rows = read_jsonl(out / METRICS_FILE)
    return rows[-1] if rows else {}


@recipe_main("grpo")
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    m = result["last_metrics"]
    print(f"grpo: {result['steps']} steps in {result['seconds']:.0f}s; last reward {m.get('reward/mean', 0):.3f}, "
          f"pass rate {m.get('pass_rate', 0):.3f}; model: {result['final']}")  # fmt: skip


if __name__ == "__main__":
    main()
