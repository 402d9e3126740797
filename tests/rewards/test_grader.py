"""TestCaseGrader on every problem format, in several languages, with the real sandbox."""

import json
from pathlib import Path

import pytest

from rewards import Problem, load_problems
from rewards.problems import parse_problem

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_problems():
    rows = [json.loads(line) for line in (FIXTURES / "formats.jsonl").read_text().splitlines()]
    for row in rows:
        if row.get("checker") == "DIVISOR_CHECKER":
            row["checker"] = str(FIXTURES / "divisor_checker.py")
    return {r["task_id"]: parse_problem(r) for r in rows}


P = fixture_problems()


def with_language(problem: Problem, language: str) -> Problem:
    return Problem(**{**problem.__dict__, "language": language})


def fence(lang, code):
    return f"Here is my solution.\n\n```{lang}\n{code}\n```\n"


# -- HumanEval ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def humaneval():
    return load_problems("humaneval")


def test_all_164_canonical_solutions_pass(grader, humaneval):
    grades = grader.grade_batch(humaneval, [p.canonical_solution for p in humaneval])
    failed = [
        (p.task_id, g.verdict, g.failure) for p, g in zip(humaneval, grades, strict=True) if not g.passed
    ]
    assert failed == []
    assert all(g.reward == 1.0 and g.tests_passed == g.tests_total > 0 for g in grades)


def test_each_of_164_fails_when_its_body_returns_none(grader, humaneval):
    grades = grader.grade_batch(humaneval, ["    return None\n"] * len(humaneval))
    passed = [p.task_id for p, g in zip(humaneval, grades, strict=True) if g.passed]
    assert passed == []
    assert {g.verdict for g in grades} == {"wrong_answer"}
    first = grades[0].failure  # has_close_elements: what went in, what was expected, what came out
    assert first.input.startswith("has_close_elements(") and first.expected == "True" and first.got == "None"


def test_humaneval_whole_function_in_a_fence_keeps_the_prompts_imports(grader, humaneval):
    p = humaneval[0]  # the prompt imports List; the fenced function uses it without importing
    body = p.canonical_solution
    fenced = fence("python", f"def {p.entry_point}(numbers: List[float], threshold: float) -> bool:\n{body}")
    plain = f"def {p.entry_point}(numbers: List[float], threshold: float) -> bool:\n{body}"
    grades = grader.grade(p, [fenced, plain, body, ""])
    assert [g.verdict for g in grades] == ["passed", "passed", "passed", "no_code"]


# -- MBPP, call, stdio -------------------------------------------------------------------------------
def test_mbpp(grader):
    p = P["mbpp/square"]
    grades = grader.grade(
        p,
        [
            fence("python", "def square(x):\n    return x * x"),
            fence("python", "def square(x):\n    return x * 2"),  # right for 2 and 0 only
            fence("python", "def square(x) return x"),
            fence("python", "def square(x):\n    return 1 / 0"),
            "I cannot do that.",
        ],
    )
    assert [(g.verdict, g.tests_passed, g.tests_total) for g in grades] == [
        ("passed", 3, 3),
        ("wrong_answer", 2, 3),
        ("compile_error", 0, 0),
        ("runtime_error", 0, 3),
        ("compile_error", 0, 0),
    ]
    assert "ZeroDivisionError" in grades[3].failure.message


def test_call_format_compares_outside_the_sandbox(grader):
    p = P["call/rev"]
    grades = grader.grade(
        p,
        [
            fence("python", "def rev(xs):\n    return tuple(reversed(xs))"),
            fence("python", "def rev(xs):\n    return xs"),
            fence("python", "def reverse(xs):\n    return xs[::-1]"),
        ],
    )
    assert [(g.verdict, g.tests_passed) for g in grades] == [
        ("passed", 2),
        ("wrong_answer", 1),
        ("runtime_error", 0),
    ]
    assert grades[1].failure.expected == "[3, 2, 1]" and grades[1].failure.got == "[1, 2, 3]"
    assert "defines no function 'rev'" in grades[2].failure.message


SUM = {
    "python": ("a, b = map(int, input().split())\nprint(a + b)", "a, b = map(int, input().split())\nprint(a - b)",
               "print(", "raise SystemExit(3)", "while True:\n    pass"),
    "c": ('#include <stdio.h>\nint main(void) { long a, b; scanf("%ld %ld", &a, &b); printf("%ld\\n", a + b); }',
          '#include <stdio.h>\nint main(void) { long a, b; scanf("%ld %ld", &a, &b); printf("%ld\\n", a * b); }',
          "int main( {", "int main(void) { int *p = 0; return *p; }", "int main(void) { for (;;); }"),
    "cpp": ("#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }",
            "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a << '\\n'; }",
            "int main() { return x; }", "#include <stdexcept>\nint main() { throw std::runtime_error(\"x\"); }",
            "int main() { volatile int x = 0; for (;;) x++; }"),
    "java": ("import java.util.*;\npublic class Sum { public static void main(String[] a) { Scanner s = new Scanner(System.in);"
             " System.out.println(s.nextLong() + s.nextLong()); } }",
             "public class Main { public static void main(String[] a) { System.out.println(0); } }",
             "public class Main { void f( }",
             "public class Main { public static void main(String[] a) { throw new RuntimeException(); } }",
             "public class Main { public static void main(String[] a) { while (true) {} } }"),
    "javascript": ("const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);",
                   "console.log(0);", "function (", "throw new Error('x');", "while (true) {}"),
    "go": ('package main\nimport "fmt"\nfunc main() { var a, b int; fmt.Scan(&a, &b); fmt.Println(a + b) }',
           'package main\nimport "fmt"\nfunc main() { fmt.Println(1) }',
           "package main\nfunc main() { x := }", 'package main\nfunc main() { panic("x") }',
           "package main\nfunc main() { for {} }"),
    "rust": ("use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap();"
             " let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!(\"{}\", v[0] + v[1]); }",
             'fn main() { println!("1"); }', "fn main() { let x: i32 = ; }", 'fn main() { panic!("x"); }',
             "fn main() { loop {} }"),
}  # fmt: skip


@pytest.mark.parametrize("language", list(SUM))
def test_stdio_in_each_language(grader, language):
    p = with_language(P["stdio/sum"], language)
    tag = {"javascript": "js", "cpp": "c++"}.get(language, language)
    grades = grader.grade(p, [fence(tag, code) for code in SUM[language]])
    verdicts = [g.verdict for g in grades]
    assert verdicts == ["passed", "wrong_answer", "compile_error", "runtime_error", "timeout"], [
        (g.verdict, g.failure) for g in grades
    ]
    assert grades[0].tests_passed == grades[0].tests_total == 2
    assert grades[1].failure.input == "1 2\n" and grades[1].failure.expected == "3\n"
    assert grades[2].failure.message  # the compiler's message


def test_hidden_split_is_graded_apart_from_the_public_one():
    from rewards import TestCaseGrader

    p = P["stdio/sum"]
    # Right on the public tests only: it special-cases them.
    code = fence("python", "s = input()\nprint({'1 2': 3, '10 -4': 6}.get(s, 0))")
    with (
        TestCaseGrader(workers=1, split="public") as public,
        TestCaseGrader(public.sandbox, split="hidden") as hidden,
    ):
        (g_pub,) = public.grade(p, [code])
        (g_hid,) = hidden.grade(p, [code])
    assert (g_pub.verdict, g_pub.tests_total) == ("passed", 2)
    assert (g_hid.verdict, g_hid.tests_passed, g_hid.tests_total) == ("wrong_answer", 1, 3)


@pytest.mark.parametrize(
    "task_id,right,wrong",
    [
        ("stdio/mean", "xs = list(map(float, input().split()))\nprint(sum(xs) / len(xs))", "print(1.5)"),
        ("stdio/letters", "print('\\n'.join(input()))", "print(input())"),
        (
            "stdio/any-divisor",
            "n = int(input())\nprint(next(d for d in range(n - 1, 1, -1) if n % d == 0))",
            "print(1)",
        ),
        (
            "stdio/any-divisor-program",
            "n = int(input())\nprint(max(d for d in range(2, n) if n % d == 0))",
            "print(5)",
        ),
    ],
)
def test_checkers(grader, task_id, right, wrong):
    grades = grader.grade(P[task_id], [fence("python", right), fence("python", wrong)])
    assert [g.verdict for g in grades] == ["passed", "wrong_answer"], grades


# -- bad input -----------------------------------------------------------------------------------------
def test_bad_input_never_crashes_the_batch_and_is_never_a_wrong_answer(grader, humaneval):
    he = humaneval[23]  # strlen
    unknown_language = with_language(P["stdio/sum"], "cobol")
    call_in_c = with_language(P["call/rev"], "c")
    bad_checker = Problem(**{**P["stdio/sum"].__dict__, "checker": "no_such_module.check"})
    huge = "```python\ndef strlen(string):\n    return len(string)\n" + "# pad\n" * 900_000 + "```"  # 5 MB
    invalid_utf8 = b"    return len(string)  # \xff\xfe".decode("utf-8", "surrogateescape")
    cases = [
        (unknown_language, "print(1)", "sandbox_error", "unknown language 'cobol'"),
        (call_in_c, "int main() {}", "sandbox_error", "graded in Python only"),
        (bad_checker, "print(3)", "sandbox_error", "no_such_module"),
        (he, "", "no_code", ""),
        (he, "   \n\n", "no_code", ""),
        (he, huge, "passed", None),
        (he, invalid_utf8, "passed", None),
        (he, "```python\n```", "no_code", ""),
    ]
    grades = grader.grade_batch([c[0] for c in cases], [c[1] for c in cases])
    for (problem, _, verdict, message), g in zip(cases, grades, strict=True):
        assert g.verdict == verdict, (problem.task_id, verdict, g)
        if message:
            assert message in g.failure.message
        if verdict == "sandbox_error":
            assert g.grader_failed and not g.passed


def test_rows_without_an_entry_point_or_format_are_named():
    from rewards import ProblemFormatError

    with pytest.raises(ProblemFormatError, match=r"'x/1'.*entry_point"):
        parse_problem({"task_id": "x/1", "prompt": "def f():\n", "test": "def check(c): pass"})
    with pytest.raises(ProblemFormatError, match="'x/2' matches no format"):
        parse_problem({"task_id": "x/2", "question": "?"})
