"""The recipes refuse bad input before they load a model, and before they delete or rewrite anything
a user may still want: a finished run, a labels file, a reward model, unfinished checkpoints."""

import json

import pytest

from recipes.config import ConfigError
from recipes.label import done_task_ids
from tests.recipes.conftest import compose_cfg


def finished_grpo_run(out):
    (out / "final").mkdir(parents=True)
    (out / "final" / "model.safetensors").write_text("weights")
    (out / "grpo_result.json").write_text("{}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy=/no/such/model"], r"policy=/no/such/model: unknown model"),
        (["steps=0"], r"steps=0: must be 1 or more"),
        (["prompts_per_step=0"], r"prompts_per_step=0: must be 1 or more"),
        (["algorithm.lr=-1"], r"algorithm: lr=-1 must be > 0"),
        (["train_problems.n=0"], r"train_problems: no problems in"),
    ],
)
def test_grpo_overwrite_keeps_the_old_run_when_the_new_inputs_are_bad(
    overrides, message, tmp_path, monkeypatch
):
    from recipes import grpo

    def no_model(*args, **kwargs):
        raise AssertionError("the learner was built before the inputs were checked")

    monkeypatch.setattr(grpo, "Learner", no_model)
    out = tmp_path / "run"
    finished_grpo_run(out)
    cfg = compose_cfg("grpo", ["policy=tiny", f"output_dir={out}", "overwrite=true", *overrides])
    with pytest.raises(ConfigError, match=message):
        grpo.run(cfg)
    assert (out / "final" / "model.safetensors").read_text() == "weights" and (
        out / "grpo_result.json"
    ).exists()


def test_grpo_refuses_problems_without_public_tests_for_the_execution_reward(tmp_path, monkeypatch):
    from recipes import grpo

    monkeypatch.setattr(grpo, "Learner", None)  # never reached
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"task_id": "a", "prompt": "def f(x):\n", "entry_point": "f", "tests": []}) + "\n"
    )
    cfg = compose_cfg(
        "grpo",
        [
            "policy=tiny",
            f"output_dir={tmp_path / 'run'}",
            "train_problems=jsonl",
            f"train_problems.path={path}",
        ],
    )
    with pytest.raises(ConfigError, match=r"train_problems: 1 problems have no public tests .* \(first: a\)"):
        grpo.run(cfg)


def labels(path, tasks, per_task):
    rows = [{"task_id": t, "completion": "x", "passed": False} for t in tasks for _ in range(per_task)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.read_text()


def test_label_continues_complete_problems_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "l.jsonl"
    labels(path, ["a", "b"], 2)
    with path.open("a") as f:
        f.write(json.dumps({"task_id": "c", "completion": "x", "passed": True}) + '\n{"task_id": "c", "comp')
    assert done_task_ids(path, 2) == {"a", "b"}
    assert [json.loads(line)["task_id"] for line in path.read_text().splitlines()] == ["a", "a", "b", "b"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda text: text.replace("}\n", "}\n{torn\n", 1),
            r"line 2 is not JSON \(a killed run tears only the last",
        ),
        (lambda text: '{"task_id": "p", "prompt": "def f():"}\n' + text, r"line 1 is not a label row"),
        (lambda text: text, r"holds labels of 2 samples per problem, and group_size=4: set group_size=2"),
    ],
)
def test_label_never_rewrites_a_file_that_is_not_its_labels(damage, message, tmp_path):
    path = tmp_path / "l.jsonl"
    text = damage(labels(path, ["a", "b", "c"], 2))
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        done_task_ids(path, 4)
    assert path.read_text() == text


def test_label_checks_the_policy_before_touching_its_output(tmp_path):
    from recipes import label

    path = tmp_path / "l.jsonl"
    text = labels(path, ["a"], 2)
    cfg = compose_cfg("label", ["policy=/no/such/model", f"out={path}", "group_size=4", "overwrite=true"])
    with pytest.raises(ConfigError, match=r"policy=/no/such/model: unknown model"):
        label.run(cfg)
    assert path.read_text() == text


def test_sft_refuses_to_restart_over_unfinished_checkpoints(tmp_path):
    from recipes import sft

    (tmp_path / "run" / "checkpoint-100").mkdir(parents=True)
    cfg = compose_cfg("sft", [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit, match=r"an unfinished SFT run \(checkpoints\); pass resume=true"):
        sft.run(cfg)
    assert (tmp_path / "run" / "checkpoint-100").is_dir()


def test_reward_model_keeps_a_trained_model_and_checks_its_inputs_first(tmp_path):
    from recipes import reward_model

    out = tmp_path / "rm"
    (out / "final").mkdir(parents=True)
    labels_file = tmp_path / "l.jsonl"
    labels(labels_file, ["a"], 2)
    base = ["backbone=tiny", f"labels={labels_file}", f"output_dir={out}"]
    with pytest.raises(ConfigError, match=r"already holds a reward model \(final/\); pass overwrite=true"):
        reward_model.run(compose_cfg("reward_model", base))
    for overrides, message in [
        (["eval_labels=/no/such.jsonl"], r"eval_labels=/no/such.jsonl: no such labels file"),
        (["backbone=/no/such/model"], r"backbone=/no/such/model: unknown model"),
        ([f"labels={tmp_path / 'none.jsonl'}"], r"labels=.*none.jsonl: .*does not exist"),
    ]:
        with pytest.raises(ConfigError, match=message):
            reward_model.run(compose_cfg("reward_model", [*base, "overwrite=true", *overrides]))
    assert (out / "final").is_dir() and not any((out / "final").iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"data source 'instructions': path is not set"),
        (["data.train.0.path=/no/such/rows.jsonl"], r"/no/such/rows.jsonl: no such file"),
    ],
)
def test_sft_reads_its_data_before_it_loads_the_model(overrides, message, tmp_path, monkeypatch):
    from grpo.sft_data import SFTDataError
    from recipes import sft

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was read")

    monkeypatch.setattr(sft, "load_model", no_model)
    cfg = compose_cfg("sft", ["data=jsonl", f"output_dir={tmp_path / 'run'}", *overrides])
    with pytest.raises(SFTDataError, match=message):
        sft.run(cfg)
