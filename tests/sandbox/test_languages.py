"""Every language: hello world, stdin to stdout, a compile error, a runtime error and a timeout."""

import pytest

from sandbox import LANGUAGES, Limits, RunRequest, Status

PROGRAMS = {
    "python": {
        "hello": 'print("hello")',
        "echo": "a, b = map(int, input().split())\nprint(a + b)",
        "compile_error": "def f(:\n    pass",
        "runtime_error": "raise ValueError('boom')",
        "loop": "while True:\n    pass",
    },
    "c": {
        "hello": '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }',
        "echo": '#include <stdio.h>\nint main(void) { int a, b; scanf("%d %d", &a, &b); printf("%d\\n", a + b); }',
        "compile_error": "int main(void) { return undefined_name; }",
        "runtime_error": "#include <stdlib.h>\nint main(void) { abort(); }",
        "loop": "int main(void) { volatile unsigned long i = 0; for (;;) i++; }",
    },
    "cpp": {
        "hello": '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }',
        "echo": "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }",
        "compile_error": "int main() { std::vector<int> v; }",
        "runtime_error": '#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }',
        "loop": "int main() { volatile unsigned long i = 0; for (;;) i++; }",
    },
    "java": {
        "hello": 'public class Hello { public static void main(String[] a) { System.out.println("hello"); } }',
        "echo": "import java.util.*;\npublic class Main { public static void main(String[] x) {"
        " Scanner s = new Scanner(System.in); System.out.println(s.nextInt() + s.nextInt()); } }",
        "compile_error": "public class Main { public static void main(String[] a) { int x = ; } }",
        "runtime_error": 'public class Main { public static void main(String[] a) { throw new RuntimeException("boom"); } }',
        "loop": "public class Main { public static void main(String[] a) { long i = 0; while (true) i++; } }",
    },
    "javascript": {
        "hello": 'console.log("hello")',
        "echo": "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);",
        "compile_error": "function f( {",
        "runtime_error": "throw new Error('boom')",
        "loop": "for (;;) {}",
    },
    "rust": {
        "hello": 'fn main() { println!("hello"); }',
        "echo": "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap();"
        ' let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!("{}", v[0] + v[1]); }',
        "compile_error": 'fn main() { let x: i32 = "no"; }',
        "runtime_error": 'fn main() { panic!("boom"); }',
        "loop": "fn main() { let mut i: u64 = 0; loop { unsafe { std::ptr::write_volatile(&mut i, i + 1) } } }",
    },
    "go": {
        "hello": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }',
        "echo": 'package main\nimport "fmt"\nfunc main() { var a, b int; fmt.Scan(&a, &b); fmt.Println(a + b) }',
        "compile_error": "package main\nfunc main() { x := }",
        "runtime_error": 'package main\nfunc main() { panic("boom") }',
        "loop": "package main\nfunc main() { i := 0; for { i++ } }",
    },
    "bash": {
        "hello": "echo hello",
        "echo": "read a b; echo $((a + b))",
        "compile_error": "if then fi (",
        "runtime_error": "echo boom >&2; exit 3",
        "loop": "while :; do :; done",
    },
    "ruby": {
        "hello": 'puts "hello"',
        "echo": "a, b = gets.split.map(&:to_i)\nputs a + b",
        "compile_error": "def f(\n",
        "runtime_error": "raise 'boom'",
        "loop": "loop { }",
    },
    "php": {
        "hello": '<?php echo "hello\\n";',
        "echo": '<?php [$a, $b] = array_map("intval", explode(" ", trim(fgets(STDIN)))); echo $a + $b, "\\n";',
        "compile_error": "<?php function f( {",
        "runtime_error": '<?php throw new Exception("boom");',
        "loop": "<?php while (true) {}",
    },
    "lua": {
        "hello": 'print("hello")',
        "echo": 'local a, b = io.read("n", "n")\nprint(math.tointeger(a + b))',
        "compile_error": "function f(",
        "runtime_error": 'error("boom")',
        "loop": "while true do end",
    },
}


def test_every_language_has_programs():
    assert set(PROGRAMS) == set(LANGUAGES)


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_language(sandbox, language):
    programs = PROGRAMS[language]
    quick = Limits(time_limit_s=1.0)
    hello, echo, compile_error, runtime_error, loop = sandbox.run_many(
        [
            RunRequest(language, programs["hello"]),
            RunRequest(language, programs["echo"], stdin="20 22\n"),
            RunRequest(language, programs["compile_error"]),
            RunRequest(language, programs["runtime_error"]),
            RunRequest(language, programs["loop"], limits=quick),
        ]
    )
    assert (hello.status, hello.stdout) == (Status.OK, "hello\n"), hello
    assert (echo.status, echo.stdout) == (Status.OK, "42\n"), echo
    assert compile_error.status is Status.COMPILE_ERROR, compile_error
    assert compile_error.compile is not None and compile_error.compile.stderr.strip(), compile_error
    assert runtime_error.status is Status.RUNTIME_ERROR and runtime_error.exit_code != 0, runtime_error
    assert loop.status is Status.TIMEOUT, loop
    assert loop.time_s < 5
