"""Config checks the recipes share: a section built into a dataclass refuses unknown keys with the
closest valid one, and options that contradict each other are refused (or warned about) with why."""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig, OmegaConf

T = TypeVar("T")


class ConfigError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def require_counts(cfg: DictConfig, *keys: str) -> None:
    """Refuse any of `keys` that is not a whole number of at least 1 (steps, samples, batch sizes)."""
    for key in keys:
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]}: must be 1 or more")


def unknown_key_message(key: str, valid: set[str], section: str) -> str:
    prefix = f"{section}." if section else ""
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return f"unknown key {prefix}{key}{hint}"


def checked_dataclass(cls: type[T], values: dict[str, Any], section: str) -> T:
    """`cls(**values)`, after refusing any key `cls` does not have; its own checks become a ConfigError."""
    valid = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in valid:
            raise ConfigError(unknown_key_message(key, valid, section))
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{section}: {e}") from None


def refuse_contradictions(cfg: DictConfig) -> None:
    """Options of a GRPO config that cannot go together; each refusal says why."""
    alg, reward = cfg.algorithm, cfg.reward
    if alg.get("loss_type") == "dr_grpo" and alg.get("scale", "group") == "group":
        raise ConfigError(
            "algorithm.loss_type=dr_grpo with algorithm.scale=group: Dr. GRPO's point is to drop the "
            "per-group std scaling (it biases towards easy and hard prompts); set algorithm.scale=none"
        )
    if reward.kind in ("rm", "blend") and (OmegaConf.is_missing(reward, "model") or not reward.model):
        raise ConfigError(
            f"reward.kind={reward.kind} needs reward.model (a folder from recipes.reward_model)"
        )
    iterative = reward.get("iterative")
    if iterative is not None and iterative.every:
        if reward.kind == "execution":
            raise ConfigError(
                "reward.iterative.every is set with reward.kind=execution: iterative RL retrains a reward "
                "model, and this reward uses none (reward=rm or reward=blend)"
            )
        if not 0 <= iterative.replay < 1:
            raise ConfigError(
                f"reward.iterative.replay={iterative.replay}: a share of the set, from 0 up to 1"
            )
        if iterative.reset_reference and not alg.get("kl_coef", 0):
            raise ConfigError(
                "reward.iterative.reset_reference=true with algorithm.kl_coef=0: there is no KL reference "
                "to reset; set algorithm.kl_coef > 0 or leave the reference alone"
            )
    if cfg.group_size < 2:
        raise ConfigError(f"group_size={cfg.group_size}: group-relative advantages need at least 2 samples")
    if cfg.sampling.temperature == 0:
        raise ConfigError(
            "sampling.temperature=0 gives G identical completions: no group signal to learn from"
        )
    if alg.get("temperature", 1.0) != cfg.sampling.temperature:
        print(
            f"warning: algorithm.temperature={alg.get('temperature', 1.0)} differs from sampling.temperature="
            f"{cfg.sampling.temperature}; the learner's log-probs then belong to another distribution than "
            "the samples'",
            file=sys.stderr,
        )


CONFIG_DIR = Path(__file__).parent / "configs"


def config_groups() -> set[str]:
    return {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}


def experiment_recipe(option: str) -> str | None:
    """The recipe an `experiment/<option>.yaml` is for, from its `# Run: python -m recipes.<name>` line
    (None when the file is not there: Hydra lists the options itself)."""
    path = CONFIG_DIR / "experiment" / f"{option}.yaml"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        words = line.removeprefix("#").split()
        if words[:3] == ["Run:", "python", "-m"] and len(words) > 3:
            return words[3].removeprefix("recipes.")
    raise ConfigError(
        f"{path} has no '# Run: python -m recipes.<name> ...' line saying which recipe it is for"
    )


def wrong_experiment(config_name: str, args: list[str]) -> str | None:
    """An `experiment=X` argument whose file is written for another recipe, said as such."""
    for arg in args:
        key, _, option = arg.lstrip("+").partition("=")
        if key == "experiment" and option:
            recipe = experiment_recipe(option)
            if recipe is not None and recipe != config_name:
                return (
                    f"experiment={option} is an experiment for recipes.{recipe}, not recipes.{config_name}: "
                    f"run python -m recipes.{recipe} experiment={option}"
                )
    return None


def misspelt_override(
    config_name: str, args: list[str], composer: Callable[[str, list[str]], DictConfig] | None = None
) -> str | None:
    """The first `key=value` argument whose key the composed config lacks, with the closest valid key.

    Hydra refuses such an override too, but without a suggestion; group choices (`rollout=ray_vllm`)
    are left to Hydra, which lists the available options itself. Overrides with `+`, `++` or `~` and
    `hydra.` keys are not checked. `composer(config_name, overrides)` composes where Hydra is already
    initialised (a pipeline's stages).
    """
    from hydra import compose, initialize_config_dir

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    groups = config_groups()
    choices = [o for o in overrides if o.split("=", 1)[0] in groups]
    keys = [
        o.split("=", 1)[0] for o in overrides
        if o not in choices and not o.startswith(("+", "~", "hydra.", "hydra/"))
    ]  # fmt: skip
    if not keys:
        return None
    try:
        if composer is not None:
            tree = OmegaConf.to_container(composer(config_name, choices), resolve=False)
        else:
            with initialize_config_dir(str(CONFIG_DIR), version_base=None):
                tree = OmegaConf.to_container(compose(config_name, choices), resolve=False)
    except Exception:
        return None
    for key in keys:
        node: Any = tree
        path: list[str] = []
        for part in key.split("."):
            if not isinstance(node, dict):
                break  # a list index or a leaf: Hydra checks the rest
            if part not in node:
                return unknown_key_message(part, set(node), ".".join(path))
            node = node[part]
            path.append(part)
    return None


def recipe_main(config_name: str) -> Callable[[Callable[[DictConfig], None]], Callable[[], None]]:
    """`hydra.main` for a recipe, which first refuses a misspelt override with a suggestion."""

    def wrap(task: Callable[[DictConfig], None]) -> Callable[[], None]:
        hydra_main = hydra.main(config_path="configs", config_name=config_name, version_base=None)(task)

        @functools.wraps(task)
        def main() -> None:
            message = wrong_experiment(config_name, sys.argv[1:]) or misspelt_override(
                config_name, sys.argv[1:]
            )
            if message:
                raise ConfigError(message)
            hydra_main()

        return main

    return wrap
