"""`recipes.pipeline` with 2 steps per stage: every stage runs and feeds the next, the summary ends with
the line outside tools read, and a rerun skips the stages that are done."""

import json
import re
import subprocess
import sys

from tests.recipes.conftest import ROOT

STAGES = {
    "sft": ["trainer.max_steps=2", "trainer.eval_steps=2", "trainer.save_steps=2"],
    "label": ["problems.n=4", "group_size=4", "sampling.max_tokens=16", "prompts_per_round=4", "grader.workers=2"],
    "reward_model": ["+trainer.max_steps=2"],
    "grpo": ["steps=2", "prompts_per_step=2", "group_size=2", "sampling.max_tokens=16", "grader.workers=2",
             "save_every=1"],
    "control": ["trainer.eval_steps=1"],
    "eval": ["data.problems.n=8", "grader.workers=2"],
}  # fmt: skip
# a stage's overrides are a list of quoted strings on the command line: stages.sft=['trainer.max_steps=2']
SMOKE = [f"stages.{k}=[{','.join(repr(o) for o in v)}]" for k, v in STAGES.items()] + [
    "heldout_label_problems=3"
]
LAST_LINE = re.compile(
    r"held-out pass@1: SFT (\d\.\d\d) -> GRPO (\d\.\d\d) \(([+-]\d+\.\d) points\); "
    r"same-time SFT-only (\d\.\d\d) \(GRPO ([+-]\d+\.\d) points over it\)"
)


def pipeline(out, *extra):
    cmd = [sys.executable, "-m", "recipes.pipeline", f"output_dir={out}", *SMOKE, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_pipeline_smoke_runs_every_stage_and_prints_the_summary(tmp_path):
    out = tmp_path / "pipe"
    done = pipeline(out)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    summary = json.loads((out / "summary.json").read_text())
    p = summary["pass@1"]
    assert float(match[1]) == round(p["sft"], 2) and float(match[2]) == round(p["grpo"], 2)
    assert float(match[4]) == round(p["control"], 2)
    assert set(summary["seconds"]) == {"sft", "label", "reward_model", "grpo", "control", "eval_sft", "eval_grpo",
                                       "eval_control"}  # fmt: skip
    assert summary["control_budget_s"] == sum(
        summary["seconds"][k] for k in ("label", "reward_model", "grpo")
    )
    assert summary["heldout_problems"] == 8
    # each stage fed the next
    grpo_cfg = (out / "grpo" / "config.yaml").read_text()
    assert f"policy: {out / 'sft' / 'final'}" in grpo_cfg
    assert len((out / "label" / "train.jsonl").read_text().splitlines()) == 16
    assert len((out / "label" / "heldout.jsonl").read_text().splitlines()) == 12  # heldout_label_problems x 4
    assert len((out / "grpo" / "metrics.jsonl").read_text().splitlines()) == 2
    control = json.loads((out / "control" / "sft_result.json").read_text())
    assert control["steps"] >= 1
    for name in ("sft", "grpo", "control"):
        ev = json.loads((out / "eval" / name / "eval.json").read_text())
        assert ev["problems"] == 8 and 0.0 <= ev["pass@1"] <= 1.0
    # a rerun finds every stage done and prints the same summary
    again = pipeline(out)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("already done") == 8
    assert again.stdout.strip().splitlines()[-1] == lines[-1]
