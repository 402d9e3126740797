"""load_problems reads every row format of DESIGN.md 3.1, and names the row and fields it cannot read."""

import gzip
import json

import pytest

from rewards import ProblemFormatError, load_problems

ROWS = [
    {
        "task_id": "he/0",
        "prompt": "def f(x):\n",
        "test": "def check(c):\n    assert c(1) == 2\n",
        "entry_point": "f",
    },
    {"task_id": 7, "text": "Write f.", "test_list": ["assert f(1) == 2"], "test_setup_code": "import math"},
    {
        "task_id": "cf/1",
        "prompt": "Read n, print 2n.",
        "language": "cpp",
        "tests": [{"input": "1\n", "output": "2\n"}],
        "hidden_tests": [{"input": "5\n", "output": "10\n"}],
        "checker": "tokens",
        "time_limit_s": 1,
    },
    {"task_id": "call/1", "prompt": "def f(x):", "entry_point": "f", "tests": [{"args": [1], "expected": 2}]},
]


def write_jsonl(path, rows, compress=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_every_format_is_detected_from_its_columns(tmp_path, compress):
    path = write_jsonl(tmp_path / ("p.jsonl.gz" if compress else "p.jsonl"), ROWS, compress)
    he, mbpp, stdio, call = load_problems(path)
    assert (he.format, he.entry_point, he.language) == ("humaneval", "f", "python")
    assert (mbpp.format, mbpp.task_id, mbpp.prompt) == ("mbpp", "7", "Write f.")
    assert mbpp.test == "import math\nassert f(1) == 2\n"
    assert (stdio.format, stdio.language, stdio.checker, stdio.time_limit_s) == (
        "stdio",
        "cpp",
        "tokens",
        1.0,
    )
    assert [t.input for t in stdio.tests] == ["1\n"] and [t.output for t in stdio.hidden_tests] == ["10\n"]
    assert (call.format, call.tests[0].args, call.tests[0].expected) == ("call", (1,), 2)


def test_rows_from_an_hf_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([ROWS[0], {**ROWS[0], "task_id": "he/1"}])
    assert [p.task_id for p in load_problems(ds)] == ["he/0", "he/1"]


def test_all_164_humaneval_problems_load_from_the_package():
    problems = load_problems("humaneval")
    assert len(problems) == 164
    assert len({p.task_id for p in problems}) == 164
    assert all(p.format == "humaneval" and p.entry_point and p.canonical_solution for p in problems)
    assert problems[0].task_id == "HumanEval/0" and problems[0].entry_point == "has_close_elements"


def test_unknown_format_names_the_row_and_missing_fields():
    with pytest.raises(ProblemFormatError, match=r"'x/1' matches no format: the nearest, stdio, lacks tests"):
        load_problems([{"task_id": "x/1", "prompt": "p", "solution": 1}])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"task_id": "s", "prompt": "p", "tests": [{"input": "1"}]}, "test 0 needs 'input' and 'output'"),
        (
            {"task_id": "c", "prompt": "p", "entry_point": "f", "tests": [{"args": 1, "expected": 2}]},
            "'args' must be a list",
        ),
        ({"task_id": "m", "text": "t", "test_list": "assert f()"}, "test_list must be a list"),
        ({**ROWS[0], "time_limit_s": "fast"}, "time_limit_s='fast' is not a float"),
        ({**ROWS[0], "time_limit_s": -1}, "time_limit_s=-1 must be a positive number"),
        ({**ROWS[0], "time_limit_s": "nan"}, "time_limit_s='nan' must be a positive number"),
        ({**ROWS[0], "time_limit_s": "inf"}, "time_limit_s='inf' must be a positive number"),
        ({**ROWS[0], "memory_mb": 0}, "memory_mb=0 must be a positive number"),
        ({**ROWS[0], "entry_point": ""}, "entry_point='' is not a function name"),
        ({"task_id": "s", "prompt": "p", "tests": "[not json"}, "tests is a string that is not a JSON list"),
        (
            {"task_id": "c", "prompt": "p", "tests": [{"args": [1], "expected": 2}]},
            "test 0 has 'args', as in the call format, which needs an entry_point column: the row has none",
        ),
    ],
)
def test_malformed_rows_are_errors(row, message):
    with pytest.raises(ProblemFormatError, match=message):
        load_problems([row])


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ProblemFormatError, match=r"bad.jsonl:2: not valid JSON"):
        load_problems(path)


def test_a_line_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b'\n{"task_id": "\xff"}\n')
    with pytest.raises(ProblemFormatError, match=r"bad.jsonl:2: not valid UTF-8 \(byte 14 of the line\)"):
        load_problems(path)
