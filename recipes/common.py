"""What several recipes share: problems from config, rollout workers, sampling settings, grading with
one retry of the grader's own failures, and the output-directory rules."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from grpo.rollout import SamplingConfig
from rewards import Problem, load_problems

ROLLOUT_KINDS = ("hf", "vllm", "ray")


def read_problems(spec: Any) -> list[Problem]:
    """Problems from a path or dataset name (a string), or from a `_target_` that returns rows."""
    if isinstance(spec, str):
        return load_problems(spec)
    return load_problems(instantiate(spec))


def sampling_config(spec: DictConfig, **override: Any) -> SamplingConfig:
    args: dict[str, Any] = OmegaConf.to_container(spec, resolve=True)  # type: ignore[assignment]
    args |= override
    return SamplingConfig(**{**args, "stop": tuple(args.get("stop") or ())})


def worker_factory(engine: str, policy: str, options: dict[str, Any] | None = None) -> Any:
    """A no-argument callable that builds one rollout worker: `hf` (transformers) or `vllm`."""
    options = dict(options or {})
    if engine == "hf":
        from grpo.hf_worker import HFWorker

        return functools.partial(HFWorker, policy, **options)
    if engine == "vllm":
        from grpo.vllm_worker import VLLMWorker

        return functools.partial(VLLMWorker, policy, **options)
    raise SystemExit(f"error: rollout engine {engine!r} is not one of hf, vllm")


def make_worker(kind: str, policy: str) -> Any:
    """One in-process worker, as `recipes.label` uses it."""
    return worker_factory(kind, policy, {"batch_size": 64} if kind == "hf" else {})()


def grade_twice(grader: Any, problems: Sequence[Problem], texts: Sequence[str],
                lengths: Sequence[int] | None = None) -> list[Any]:  # fmt: skip
    """Grades, with each `sandbox_error` retried once; a second failure stops the run (it is not an
    answer's verdict, so it must neither be dropped nor scored 0)."""
    grades = grader.grade_batch(problems, texts, lengths)
    retry = [i for i, g in enumerate(grades) if g.grader_failed]
    if retry:
        again = grader.grade_batch(
            [problems[i] for i in retry], [texts[i] for i in retry],
            None if lengths is None else [lengths[i] for i in retry],
        )  # fmt: skip
        for i, g in zip(retry, again, strict=True):
            if g.grader_failed:
                raise RuntimeError(
                    f"the grader failed twice on a completion of {problems[i].task_id}: {g.failure}"
                )
            grades[i] = g
    return grades


def check_fresh_output(out: Path, marker: str, *, resume: bool, overwrite: bool, what: str) -> None:
    """Refuse to write over a run that `out` already holds unless `resume` or `overwrite` says so."""
    if not out.exists() or not any(out.iterdir()) or resume or overwrite:
        return
    if (out / marker).exists():
        held = f"a finished {what} run ({marker})"
    elif any(out.glob("checkpoint-*")):
        held = f"an unfinished {what} run (checkpoints)"
    else:
        return
    raise SystemExit(
        f"error: {out} already holds {held}; pass resume=true to continue it, overwrite=true to replace "
        "it, or choose another output_dir"
    )
