"""Our grader inside other tools: TRL's GRPOTrainer, verl's compute_score, and a Hydra `_target_`."""

import textwrap
from pathlib import Path

import pytest

from rewards import as_trl_reward, as_verl_compute_score, load_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def humaneval():
    return {p.task_id: p for p in load_problems("humaneval")}


def test_trl_reward_function_signature_and_values(grader, humaneval):
    reward = as_trl_reward(grader, humaneval)
    p = humaneval["HumanEval/23"]
    completions = [
        p.canonical_solution,
        "    return None\n",
        [{"role": "assistant", "content": p.canonical_solution}],
    ]
    values = reward(prompts=[p.prompt] * 3, completions=completions, task_id=[p.task_id] * 3)
    assert values == [1.0, 0.0, 1.0]
    # A problem given by the sample's own columns instead of a table; an unknown language is None
    # (TRL leaves None out of the reward mean), never a 0 that would read as a wrong answer.
    columns = {
        "task_id": ["s/1", "s/1"],
        "tests": [[{"input": "", "output": "7\n"}]] * 2,
        "language": ["python", "cobol"],
    }
    by_columns = as_trl_reward(grader)
    assert by_columns(prompts=["Print 7."] * 2, completions=["print(7)"] * 2, **columns) == [1.0, None]


def test_verl_compute_score(grader, humaneval):
    score = as_verl_compute_score(grader, humaneval)
    p = humaneval["HumanEval/23"]
    assert score("humaneval", p.canonical_solution, p.task_id)["score"] == 1.0
    assert score("humaneval", "    return -1\n", p.task_id) == {
        "score": 0.0,
        "acc": 0.0,
        "tests_passed": 0,
        "tests_total": 3,
    }
    by_row = as_verl_compute_score(grader)
    gt = '{"task_id": "s/2", "prompt": "Print 7.", "tests": [{"input": "", "output": "7\\n"}]}'
    assert by_row("stdio", "```python\nprint(7)\n```", gt)["acc"] == 1.0
    with pytest.raises(RuntimeError, match="sandbox_error"):
        by_row("stdio", "print(7)", gt.replace('"Print 7."', '"Print 7.", "language": "cobol"'))


def test_a_grader_from_a_temporary_module_is_chosen_by_a_hydra_override(tmp_path, monkeypatch, humaneval):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    (tmp_path / "my_graders.py").write_text(
        textwrap.dedent(
            '''
            from rewards import Grade

            class LengthGrader:
                """Rewards short completions: 1 / (1 + characters)."""

                def __init__(self, scale: float = 1.0):
                    self.scale = scale

                def grade(self, problem, completions):
                    return [Grade(False, self.scale / (1 + len(c)), "wrong_answer", 0, 1) for c in completions]
            '''
        )
    )
    (tmp_path / "configs" / "grader").mkdir(parents=True)
    (tmp_path / "configs" / "grader" / "length.yaml").write_text(
        "_target_: my_graders.LengthGrader\nscale: 2.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "configs"), version_base=None):
        default = compose(config_name="grade")
        assert default.grader._target_ == "rewards.TestCaseGrader"
        cfg = compose(
            config_name="grade", overrides=[f"hydra.searchpath=[file://{tmp_path}/configs]", "grader=length"]
        )
    custom = instantiate(cfg.grader)
    assert type(custom).__module__ == "my_graders"
    grades = custom.grade(humaneval["HumanEval/0"], ["x", "xxx"])
    assert [g.reward for g in grades] == [1.0, 0.5]
    reward = as_trl_reward(custom, humaneval)  # and it plugs into TRL the same way
    assert reward(prompts=["p"], completions=["x"], task_id=["HumanEval/0"]) == [1.0]


@pytest.mark.slow
def test_trl_grpo_trainer_runs_a_step_with_our_grader(grader, humaneval, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from grpo.models import load_model

    model, tokenizer = load_model("tiny")
    ids = ["HumanEval/0", "HumanEval/23"]
    data = Dataset.from_dict({"prompt": [humaneval[i].prompt for i in ids], "task_id": ids})
    calls = []
    reward = as_trl_reward(grader, humaneval)

    def logged(prompts, completions, **kw):
        values = reward(prompts, completions, **kw)
        calls.append(values)
        return values

    logged.__name__ = reward.__name__
    config = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=16,
        max_steps=1, use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", bf16=False,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=[logged], args=config, train_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    assert calls and all(len(v) == 4 and all(x is not None for x in v) for v in calls)
    assert trainer.state.global_step == 1
    assert any(k.startswith("rewards/") for entry in trainer.state.log_history for k in entry)
