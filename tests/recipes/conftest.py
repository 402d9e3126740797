"""Shared by the recipe tests: composing a recipe's config, and one tiny SFT policy for the session."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import recipes

CONFIGS = Path(recipes.__file__).parent / "configs"
ROOT = CONFIGS.parents[1]
# the summary's last line, which outside tools read (recipes.pipeline and recipes.demo)
LAST_LINE = re.compile(
    r"held-out pass@1: SFT (\d\.\d\d) -> GRPO (\d\.\d\d) \(([+-]\d+\.\d) points\); "
    r"same-time SFT-only (\d\.\d\d) \(GRPO ([+-]\d+\.\d) points over it\)"
)
# A short, hot run: 3e-3 learns the format in 40-60 steps (the default 1e-3 generalises better in 300).
FAST_SFT = ["trainer.per_device_train_batch_size=32", "trainer.packing=false", "trainer.logging_steps=10",
            "trainer.learning_rate=3e-3"]  # fmt: skip
TINY_SFT_STEPS = 60


def compose_cfg(name, overrides=()):
    with initialize_config_dir(str(CONFIGS), version_base=None):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory):
    """TINY_SFT_STEPS steps of the default SFT recipe (tiny from scratch on 500 chain problems): about a minute here.
    Its policy passes some chain problems and fails others, which GRPO's groups need."""
    from recipes.sft import run

    out = tmp_path_factory.mktemp("sft") / "tiny"
    cfg = compose_cfg(
        "sft",
        [
            f"output_dir={out}",
            f"trainer.max_steps={TINY_SFT_STEPS}",
            "trainer.eval_steps=20",
            "trainer.save_steps=20",
            *FAST_SFT,
        ],
    )
    return out, run(cfg)
