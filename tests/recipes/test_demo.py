"""`recipes.demo`'s table over seeds: one row per seed, the mean and spread, and a last line of the
pipeline's form that outside tools read."""

import re

from recipes.demo import seed_table
from tests.recipes.conftest import LAST_LINE


def summary(sft, grpo, control, rm):
    return {"pass@1": {"sft": sft, "grpo": grpo, "control": control},
            "reward_model": {"pairwise_accuracy": rm}}  # fmt: skip


def test_the_seed_table_gives_each_seed_the_mean_and_spread_and_the_pipelines_last_line():
    lines = seed_table([summary(0.60, 0.70, 0.65, 0.8), summary(0.50, 0.70, 0.75, None)])
    assert lines[0].split() == ["seed", "SFT", "GRPO", "control", "GRPO", "-", "SFT", "GRPO", "-", "control",
                                "RM", "pairwise"]  # fmt: skip
    assert lines[1].split() == ["0", "0.600", "0.700", "0.650", "+10.0", "+5.0", "0.800"]
    assert lines[2].split() == ["1", "0.500", "0.700", "0.750", "+20.0", "-5.0", "n/a"]
    assert re.search(r"SFT 0\.550 ± 0\.071, GRPO 0\.700 ± 0\.000, gain \+15\.0 ± 7\.1 points", lines[3])
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    assert match.groups() == ("0.55", "0.70", "+15.0", "0.70", "+0.0")
