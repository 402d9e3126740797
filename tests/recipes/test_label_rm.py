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


def test_reward_model_on_the_toy_task_ranks_completions_of_unseen_problems(tiny_sft, tmp_path):
    """Issue 8's toy-task target with loose bounds: the default reward model (the SFT policy with its LM
    head kept, Bradley-Terry on its own labelled samples) ranks a passing completion of a problem it was
    not trained on over a failing one, and its best-of-8 pick beats a random one. The session's 60-step
    policy passes almost nothing on compositions its SFT data did not show, and about 2% of its samples
    of the SFT problems (seed 0), so both halves come from those: the reward model trains on the first 64
    and is scored on the next 128 (72 pairs in 9 problems here: the policy's own likelihood ranks 0.67 of
    them, the trained reward model 0.71). The bound is chance, 0.5, plus a margin; the pipeline reports
    the held-out split's figures for its 300-step policy (README, "Reward model")."""
    from recipes.reward_model import run

    _, result = tiny_sft
    labels, train, unseen = (tmp_path / f"{name}.jsonl" for name in ("all", "train", "unseen"))
    label(compose_cfg("label", [f"policy={result.model_dir}", "problems.seed=0", "problems.n=192", "group_size=8",
                                "sampling.temperature=0.7", "grader.workers=2", f"out={labels}"]))  # fmt: skip
    rows = labels.read_text().splitlines()
    first = {f"chains/train/0/{i}" for i in range(64)}
    train.write_text("\n".join(r for r in rows if json.loads(r)["task_id"] in first) + "\n")
    unseen.write_text("\n".join(r for r in rows if json.loads(r)["task_id"] not in first) + "\n")
    cfg = compose_cfg("reward_model", [f"backbone={result.model_dir}", f"labels={train}", f"eval_labels={unseen}",
                                       f"output_dir={tmp_path / 'rm'}", "+trainer.max_steps=12"])  # fmt: skip
    assert (cfg.head, cfg.objective) == ("likelihood", "bradley_terry")
    summary = run(cfg)
    report = summary["report"]
    best_of_8 = next(b for b in report["best_of_n"] if b["n"] == 8)
    print(f"toy task: pairwise {report['pairwise']['accuracy']:.3f} over {report['pairwise']['pairs']} pairs, "
          f"ROC-AUC {report['roc_auc']:.3f}, best-of-8 {best_of_8['rm']:.3f} against random {best_of_8['random']:.3f}")  # fmt: skip
    assert summary["train"]["steps"] == 12
    assert report["pairwise"]["pairs"] >= 20
    assert report["pairwise"]["accuracy"] >= 0.6
    assert best_of_8["rm"] > best_of_8["random"]
