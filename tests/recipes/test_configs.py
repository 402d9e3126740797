"""Every top-level config composes with every option of every group it uses, and what can be built from
it is built; every yaml says what it is for and how to run it; misspelt keys get a suggestion."""

import inspect
from pathlib import Path

import hydra.utils
import pytest
from omegaconf import OmegaConf

from grpo.learner import LearnerConfig
from recipes.common import sampling_config
from recipes.config import checked_dataclass, misspelt_override, refuse_contradictions
from rewards.grades import RewardConfig
from tests.recipes.conftest import CONFIGS, compose_cfg

TOP = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
REQUIRED = {  # mandatory (???) values, and what a group option needs
    "grpo": ["policy=tiny"],
    "label": ["policy=tiny"],
    "reward_model": ["backbone=tiny", "labels=l.jsonl"],
    "rm_eval": ["rm=r", "labels=l.jsonl"],
    "grade": ["problems=p.jsonl", "completions=c.jsonl"],
}
OPTION_NEEDS = {"model/path": ["model.name=/some/folder"], "data/jsonl": ["data.train.0.path=rows.jsonl"],
                "reward/rm": ["reward.model=rm"], "reward/blend": ["reward.model=rm"],
                "experiment/deepseek_coder_v2_lite_taco": ["reward.model=rm"],
                "train_problems/jsonl": ["train_problems.path=p.jsonl"]}  # fmt: skip


def groups_of(name):
    defaults = OmegaConf.load(CONFIGS / f"{name}.yaml").get("defaults", [])
    return [next(iter(d)).removeprefix("optional ") for d in defaults if not isinstance(d, str)]


def cases():
    for name in TOP:
        for group in groups_of(name):
            for option in sorted(p.stem for p in (CONFIGS / group).glob("*.yaml")):
                yield name, group, option


def test_every_top_level_config_is_covered():
    assert set(TOP) >= {"sft", "label", "reward_model", "grpo", "eval"}
    assert {(n, g) for n, g, _ in cases()} >= {
        ("grpo", g) for g in ("rollout", "grader", "reward", "algorithm", "logger")
    }


@pytest.mark.parametrize(("name", "group", "option"), list(cases()))
def test_composes_and_builds(name, group, option):
    cfg = compose_cfg(
        name, [*REQUIRED.get(name, []), f"{group}={option}", *OPTION_NEEDS.get(f"{group}/{option}", [])]
    )
    tree = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if "grader" in tree and "reward" in tree["grader"]:
        RewardConfig(**tree["grader"]["reward"])
    if "sampling" in tree:
        sampling_config(cfg.sampling)
    if name == "grpo":
        from grpo.hf_worker import HFWorker
        from grpo.vllm_worker import VLLMWorker

        worker = {"hf": HFWorker, "vllm": VLLMWorker}[cfg.rollout.engine]
        inspect.signature(worker).bind("model", **tree["rollout"]["engine_options"])
        problems = dict(tree["train_problems"])
        inspect.signature(hydra.utils.get_method(problems.pop("_target_"))).bind(**problems)
        checked_dataclass(
            LearnerConfig, tree["algorithm"] | {"model": "tiny", "total_steps": cfg.steps}, "algorithm"
        )
        refuse_contradictions(cfg)
        if cfg.rollout.kind == "ray":
            from grpo.ray_pool import PoolConfig

            PoolConfig(**tree["rollout"]["workers"])
            PoolConfig(**tree["rollout"]["graders"])
    if group == "data" and name in ("sft", "eval"):
        assert "problems" in tree["data"] and "train" in tree["data"]


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_says_what_it_is_for_and_how_to_run_it(path: Path):
    text = path.read_text()
    assert text.startswith("# "), "starts with a comment saying what it is for"
    assert "python -m recipes." in text.split("\n\n")[0] or any(
        line.startswith("#") and "python -m recipes." in line for line in text.splitlines()[:8]
    ), "names the command that runs it"


@pytest.mark.parametrize("name", TOP)
def test_a_misspelt_key_gets_the_closest_valid_one(name):
    tree = OmegaConf.to_container(compose_cfg(name, REQUIRED.get(name, [])), resolve=False)
    key = max(tree, key=len)  # a long key: one changed letter leaves it the closest
    typo = key[:-1] + ("x" if key[-1] != "x" else "y")
    assert misspelt_override(name, [f"{typo}=1"]) == f"unknown key {typo}; did you mean {key}?"
    assert misspelt_override(name, [f"{key}=1"]) is None
