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


def test_a_data_option_without_problems_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.problems is not set"):
        run(compose_cfg("eval", ["data=jsonl", f"output_dir={tmp_path}"]))


@pytest.mark.slow
def test_smollm2_on_humaneval(tmp_path):
    """The first 8 HumanEval problems: the command runs SmolLM2 end to end and grades it."""
    cfg = compose_cfg("eval", ["model=smollm2_135m_instruct", "data=humaneval", f"output_dir={tmp_path}", "limit=8",
                               "grader.workers=2", "data.max_tokens=192"])  # fmt: skip
    summary = run(cfg)
    assert summary["problems"] == 8 and summary["model"] == "smollm2-135m-instruct"
    assert 0.0 <= summary["pass@1"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(8)]
    assert all(r["verdict"] in ("passed", "wrong_answer", "runtime_error", "compile_error", "timeout", "no_code")
               for r in rows)  # fmt: skip
    assert summary["pass@1"] == pytest.approx(sum(r["passed"] for r in rows) / 8)
