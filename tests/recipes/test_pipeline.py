"""`recipes.pipeline` with 2 steps per stage: every stage runs and feeds the next, the summary ends with
the line outside tools read, and a rerun skips the stages that are done."""

import json
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from recipes.tracking import read_jsonl
from tests.recipes.conftest import LAST_LINE, ROOT

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
    "heldout_label_problems=3",
    "sft_examples=40",
]


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
    for name in ("sft", "control"):  # the control trains on the SFT stage's examples, not the data config's
        assert OmegaConf.load(out / name / "config.yaml").data.train[0].rows.n == 40
        assert json.loads((out / name / "sft_result.json").read_text())["data"].startswith("40 examples")
    for name in ("sft", "grpo", "control"):
        ev = json.loads((out / "eval" / name / "eval.json").read_text())
        assert ev["problems"] == 8 and 0.0 <= ev["pass@1"] <= 1.0
    # a rerun finds every stage done and prints the same summary
    again = pipeline(out)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("already done") == 8
    assert again.stdout.strip().splitlines()[-1] == lines[-1]


def write_labels(path, problems):
    """Labelled rows of both classes for each problem, as recipes.label writes them: the label stage's
    output, so that the reward model trains whatever the 2-step SFT policy samples."""
    rows = [{"task_id": f"t/{p}", "completion_id": c, "prompt": f"def f(x: int) -> int:\n    # {p}\n",
             "completion": f"    return x + {c}\n", "passed": c % 2 == 0, "pass_fraction": float(c % 2 == 0),
             "verdict": "passed" if c % 2 == 0 else "wrong_answer"}
            for p in range(problems) for c in range(4)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rm_vs_execution_runs_grpo_twice_from_one_policy_on_one_budget_and_plots_both(tmp_path):
    out = tmp_path / "ablation"
    write_labels(out / "label" / "train.jsonl", 6)
    write_labels(out / "label" / "heldout.jsonl", 3)
    (out / "label" / "done").touch()
    done = pipeline(out, "experiment=rm_vs_execution")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "pipeline: label: already done" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rewards"] == {"grpo": "execution", "grpo_rm": "rm"}
    p = summary["pass@1"]
    assert set(p) == {"sft", "grpo", "grpo_rm"}  # the experiment leaves the control out
    assert set(summary["seconds"]) == {"sft", "reward_model", "grpo", "grpo_rm", "eval_sft", "eval_grpo",
                                       "eval_grpo_rm"}  # fmt: skip
    # one policy, one budget, two rewards
    execution, rm = (OmegaConf.load(out / name / "config.yaml") for name in ("grpo", "grpo_rm"))
    assert execution.policy == rm.policy == str(out / "sft" / "final")
    for key in ("steps", "prompts_per_step", "group_size", "seed"):
        assert execution[key] == rm[key], key
    assert execution.reward.kind == "execution" and rm.reward.kind == "rm"
    assert rm.reward.model == str(out / "reward_model" / "final")
    rows = {name: read_jsonl(out / name / "metrics.jsonl") for name in ("grpo", "grpo_rm")}
    assert [r["step"] for r in rows["grpo"]] == [r["step"] for r in rows["grpo_rm"]] == [1, 2]
    assert all("reward/rm_mean" not in r for r in rows["grpo"])
    assert all(r["reward/mean"] == pytest.approx(r["reward/rm_mean"]) for r in rows["grpo_rm"])
    # the reward model's accuracy, with how many pairs and samples it rests on
    report = json.loads((out / "reward_model" / "reward_model_result.json").read_text())["report"]
    rm_summary = summary["reward_model"]
    assert rm_summary["samples"] == report["samples"] == 12  # 3 held-out problems x 4 labelled completions
    assert rm_summary["pair_problems"] == 3 and rm_summary["pairs"] == report["pairwise"]["pairs"] > 0
    assert f"({rm_summary['pairs']} pairs in 3 problems), ROC-AUC" in done.stdout
    # the plot, and both runs' held-out pass@1 in the table
    plot = out / "rewards_compared.png"
    assert summary["comparison_plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = done.stdout.strip().splitlines()
    assert f"{'after GRPO (reward=execution)':<34}{p['grpo']:>16.3f}" in lines
    assert f"{'after GRPO (reward=rm)':<34}{p['grpo_rm']:>16.3f}" in lines
    assert re.fullmatch(r"held-out pass@1: SFT \d\.\d\d -> GRPO \d\.\d\d \([+-]\d+\.\d points\)", lines[-1])
