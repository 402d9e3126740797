"""Every top-level config composes with every option of every group it uses, and what can be built from
it is built; every yaml says what it is for and how to run it; misspelt keys get a suggestion."""

import inspect
import subprocess
import sys
from pathlib import Path

import hydra.utils
import pytest
from omegaconf import OmegaConf

from grpo.learner import LearnerConfig
from recipes.common import sampling_config
from recipes.config import (
    ConfigError,
    checked_dataclass,
    experiment_recipe,
    misspelt_override,
    refuse_contradictions,
    wrong_experiment,
)
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
                if group != "experiment" or experiment_recipe(option) == name:
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
    if name == "pipeline":
        from recipes.pipeline import check_rewards

        check_rewards(cfg)
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


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")))
def test_every_experiment_names_its_recipe(option):
    assert experiment_recipe(option) in TOP


def test_an_experiment_for_another_recipe_is_refused_with_the_command_that_runs_it():
    assert experiment_recipe("rm_vs_execution") == "pipeline"
    assert experiment_recipe("qwen25_coder_1p5b_apps") == "grpo"
    assert wrong_experiment("grpo", ["reward=rm", "experiment=rm_vs_execution"]) == (
        "experiment=rm_vs_execution is an experiment for recipes.pipeline, not recipes.grpo: "
        "run python -m recipes.pipeline experiment=rm_vs_execution"
    )
    assert wrong_experiment("pipeline", ["experiment=qwen25_coder_1p5b_apps"]).startswith(
        "experiment=qwen25_coder_1p5b_apps is an experiment for recipes.grpo"
    )
    assert wrong_experiment("pipeline", ["experiment=rm_vs_execution"]) is None
    assert wrong_experiment("grpo", ["experiment=no_such_file"]) is None  # Hydra lists the options


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rewards=[rn]"], "rewards: unknown reward 'rn'; choose from blend, execution, rm"),
        (["rewards=[execution,rmm]"], "rewards: unknown reward 'rmm'; choose from blend, execution, rm"),
        (["rewards=[]"], "rewards: empty; list at least one of blend, execution, rm"),
        (["rewards=[rm,execution,rm]"], "rewards: ['rm', 'execution', 'rm'] repeats a reward"),
        (["stages.grpo=['stepz=3']"], "stages.grpo: unknown key stepz; did you mean steps?"),
        (
            ["stages.control=['trainer.max_stepz=3']"],
            "stages.control: unknown key trainer.max_stepz; did you",
        ),
        (["stages.eval=['rollout=nope']"], "stages.eval: In 'eval': Could not find 'rollout/nope'"),
        (["sft_examples=0"], "sft_examples=0: 1 or more, or null for the data config's number"),
    ],
)
def test_pipeline_refuses_what_a_stage_would_refuse_before_any_stage(overrides, message, tmp_path):
    from recipes.pipeline import run

    cfg = compose_cfg("pipeline", [f"output_dir={tmp_path / 'out'}", *overrides])
    with pytest.raises(ConfigError) as refused:
        run(cfg)
    assert str(refused.value).startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()  # refused before any stage ran


@pytest.mark.parametrize("rewards", ["[blend]", "[rm]", "[execution,rm,blend]"])
def test_pipeline_takes_any_list_of_known_rewards_from_the_command_line(rewards):
    from recipes.pipeline import check_rewards

    cfg = compose_cfg("pipeline", [f"rewards={rewards}"])
    check_rewards(cfg)
    assert list(cfg.rewards) == rewards.strip("[]").split(",")


@pytest.mark.parametrize("name", TOP)
def test_no_plain_key_is_named_like_a_config_group(name):
    """`key=value` on the command line is read as a group choice when a group has that name, so a plain
    key with a group's name can never be set (`python -m recipes.label rollout=vllm` once failed so)."""
    from recipes.config import config_groups

    keys = set(OmegaConf.load(CONFIGS / f"{name}.yaml")) - {"defaults", "hydra"}
    assert not (keys & config_groups()) - set(groups_of(name))


@pytest.mark.parametrize(
    ("override", "message"),
    [("k=[1,0]", "error: k=[1, 0]: every k of pass@k must be 1 or more"),
     ("out={tmp}/no/r.jsonl", "error: out={tmp}/no/r.jsonl: not a file in an existing folder")],
)  # fmt: skip
def test_recipes_grade_refuses_bad_arguments_before_grading(override, message, tmp_path):
    (tmp_path / "c.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n')
    run = subprocess.run(
        [sys.executable, "-m", "recipes.grade", f"completions={tmp_path}/c.jsonl", override.format(tmp=tmp_path)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert run.returncode != 0 and message.format(tmp=tmp_path) in run.stderr and "graded" not in run.stderr
