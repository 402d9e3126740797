"""`recipes.label` (sampling, grading on hidden and public tests, resumption) and `recipes.reward_model`
and `recipes.rm_eval` on its output."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import recipes
from recipes.label import run as label

CONFIGS = Path(recipes.__file__).parent / "configs"


def compose_cfg(name, overrides):
    with initialize_config_dir(str(CONFIGS), version_base=None):
        return compose(name, overrides=overrides)


def test_label_writes_graded_rows_and_resumes(tmp_path):
    out = tmp_path / "labels.jsonl"
    overrides = ["policy=tiny", "problems.n=6", "group_size=3", "prompts_per_round=4", "sampling.max_tokens=12",
                 f"out={out}", "grader.workers=2"]  # fmt: skip
    label(compose_cfg("label", overrides))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 18 and len({r["task_id"] for r in rows}) == 6
    for r in rows:
        assert r["verdict"] in {
            "passed",
            "wrong_answer",
            "runtime_error",
            "compile_error",
            "timeout",
            "no_code",
        }
        assert r["tests_total"] in (0, 10)  # 0: the program did not get as far as the tests
        assert r["pass_fraction"] == (r["tests_passed"] / 10 if r["tests_total"] else 0.0)
        assert r["public_verdict"] and isinstance(r["public_passed"], bool)
        assert r["prompt"].startswith("def f(x: int) -> int:")
    # a run killed mid-write: the last problem's rows are gone and a line is torn
    kept = [
        line for line in out.read_text().splitlines() if json.loads(line)["task_id"] != rows[-1]["task_id"]
    ]
    out.write_text("\n".join(kept[:-1]) + "\n" + kept[-1][:20])
    label(compose_cfg("label", overrides))
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(again) == 18
    assert sorted((r["task_id"], r["completion_id"]) for r in again) == sorted(
        (r["task_id"], r["completion_id"]) for r in rows
    )
    label(compose_cfg("label", overrides))  # nothing left to do
    assert len(out.read_text().splitlines()) == 18


def test_reward_model_refuses_one_class_labels(tmp_path):
    from recipes.reward_model import run
    from rewards.reward_model import LabelError

    labels = tmp_path / "labels.jsonl"
    row = {"task_id": "t", "prompt": "p", "completion": "c", "passed": False, "pass_fraction": 0.0}
    labels.write_text("\n".join(json.dumps({**row, "task_id": f"t{i}"}) for i in range(4)) + "\n")
    cfg = compose_cfg("reward_model", ["backbone=tiny", f"labels={labels}", f"output_dir={tmp_path / 'rm'}"])
    with pytest.raises(LabelError, match="all 4 labelled completions fail"):
        run(cfg)


def test_label_in_chat_format_keeps_the_prompt_the_policy_saw(tiny_sft, tmp_path):
    """prompt_format=chat: each row's prompt is the chat-template turn the policy answered, so the reward
    model later scores what was asked; no human-eval stop sequence cut the answer."""
    from recipes.common import CHAT_INSTRUCTION, chat_prompts
    from recipes.config import ConfigError
    from rewards import chains

    _, result = tiny_sft
    out = tmp_path / "labels.jsonl"
    label(compose_cfg("label", [f"policy={result.model_dir}", "prompt_format=chat", "problems.n=3", "group_size=2",
                                "sampling.max_tokens=24", f"out={out}", "grader.workers=2"]))  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    problems = {p["task_id"]: p["prompt"] for p in chains.generate("train", 3, 1)}
    assert len(rows) == 6 and {r["task_id"] for r in rows} == set(problems)
    for r in rows:
        [shown] = chat_prompts(Path(result.model_dir), [problems[r["task_id"]]])
        assert r["prompt"] == shown and CHAT_INSTRUCTION.format(prompt=problems[r["task_id"]]) in shown
    with pytest.raises(ConfigError, match=r"prompt_format='json': choose from raw, chat"):
        label(compose_cfg("label", ["policy=tiny", "prompt_format=json", f"out={tmp_path / 'x.jsonl'}"]))
