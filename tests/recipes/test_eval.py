"""`recipes.eval`: greedy pass@1 and sampled pass@k on the hidden tests, with per-problem results; SmolLM2
on HumanEval through the same command."""

import json

import pytest

from recipes.config import ConfigError
from recipes.eval import run
from rewards.grades import pass_at_k
from tests.recipes.conftest import compose_cfg


def test_greedy_pass_at_1_is_the_mean_of_the_per_problem_results(tiny_sft, tmp_path):
    _, result = tiny_sft
    cfg = compose_cfg("eval", [f"model_path={result.model_dir}", f"output_dir={tmp_path}", "data.problems.n=24",
                               "batch_prompts=10", "grader.workers=2"])  # fmt: skip
    summary = run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == summary["problems"] == 24
    assert {r["task_id"] for r in rows} == {f"chains/heldout/0/{i}" for i in range(24)}
    assert summary["pass@1"] == pytest.approx(sum(r["passed"] for r in rows) / 24)
    assert set(summary) >= {"pass@1"} and "pass@10" not in summary  # k > n is not reported
    for r in rows:
        assert r["n"] == 1 and r["verdict"] and (r["passed"] == (r["verdict"] == "passed"))
        assert r["verdict"] == "passed" or r["failure"] or r["verdict"] in ("no_code", "compile_error")
    assert json.loads((tmp_path / "eval.json").read_text()) == summary


def test_sampled_pass_at_k_uses_the_unbiased_estimator(tiny_sft, tmp_path):
    _, result = tiny_sft
    cfg = compose_cfg("eval", [f"model_path={result.model_dir}", f"output_dir={tmp_path}", "data.problems.n=6",
                               "num_samples=10", "sampling.temperature=1.0", "grader.workers=2"])  # fmt: skip
    summary = run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for k in (1, 10):
        assert summary[f"pass@{k}"] == pytest.approx(sum(pass_at_k(10, r["passed"], k) for r in rows) / 6)
    assert summary["pass@10"] >= summary["pass@1"]


def test_chat_prompts_ask_for_the_function_in_the_models_template(tiny_sft, tmp_path):
    from recipes.common import CHAT_INSTRUCTION, chat_prompts

    _, result = tiny_sft
    prompt = 'def f(x: int) -> int:\n    """Double x."""\n'
    [chat] = chat_prompts(result.model_dir, [prompt])
    assert CHAT_INSTRUCTION.format(prompt=prompt) in chat and chat != CHAT_INSTRUCTION.format(prompt=prompt)
    cfg = compose_cfg("eval", [f"model_path={result.model_dir}", f"output_dir={tmp_path}", "data.problems.n=4",
                               "grader.workers=2", "prompt_format=chat", "data.max_tokens=16"])  # fmt: skip
    summary = run(cfg)
    assert summary["prompt_format"] == "chat" and summary["problems"] == 4


def test_an_unknown_prompt_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"prompt_format='chatml': choose from raw, chat"):
        run(compose_cfg("eval", ["prompt_format=chatml", f"output_dir={tmp_path}"]))


def test_a_data_option_without_problems_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.problems is not set"):
        run(compose_cfg("eval", ["data=jsonl", f"output_dir={tmp_path}"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("num_samples=0", r"num_samples=0: must be 1 or more"),
        ("batch_prompts=0", r"batch_prompts=0: must be 1 or more"),
        ("limit=-1", r"limit=-1: the number of problems to evaluate, 0 or null for all of them"),
        ("ks=[1,0]", r"ks=\[1, 0\]: every k of pass@k must be 1 or more"),
        ("sampling.temperature=abc", r"sampling\.temperature='abc' is not a number"),
        ("sampling.top_p=0", r"sampling\.top_p=0 must be in \(0, 1\]"),
        ("sampling.max_tokens=0", r"sampling\.top_k=0 must be 0 or more, max_tokens=0 1 or more"),
    ],
)
def test_bad_numbers_are_refused_before_the_model_loads(override, message, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr("recipes.eval.build_rollout", no_model)
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg("eval", [override, "data.problems.n=4", f"output_dir={tmp_path}"]))


@pytest.mark.slow
@pytest.mark.parametrize("prompt_format", ["raw", "chat"])
def test_smollm2_on_humaneval(prompt_format, tmp_path):
    """The first 8 HumanEval problems: the command runs SmolLM2 end to end and grades it."""
    cfg = compose_cfg("eval", ["model=smollm2_135m_instruct", "data=humaneval", f"output_dir={tmp_path}", "limit=8",
                               "grader.workers=2", "data.max_tokens=192", f"prompt_format={prompt_format}"])  # fmt: skip
    summary = run(cfg)
    assert summary["problems"] == 8 and summary["model"] == "smollm2-135m-instruct"
    assert 0.0 <= summary["pass@1"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(8)]
    assert all(r["verdict"] in ("passed", "wrong_answer", "runtime_error", "compile_error", "timeout", "no_code")
               for r in rows)  # fmt: skip
    assert summary["pass@1"] == pytest.approx(sum(r["passed"] for r in rows) / 8)
