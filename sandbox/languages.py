"""Languages, each one data entry: source file name, compile command, run command, version command.

Commands are argv templates. `{build}` is the read-only directory holding the source and what the
compiler made, `{src}` the source file in it, `{mem}` the memory limit in MB, `{cls}` Java's class.
Interpreted languages "compile" with their own syntax check, so a syntax error is a `compile_error`
with the interpreter's message. Python has no command at all: the fork server compiles and runs it
in-process (`python: True`).

Adding a language is one entry here plus a test in tests/sandbox/test_languages.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from sandbox.types import ToolchainMissing

# The PATH inside the sandbox; toolchains are looked up on it, never on the caller's PATH.
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Language:
    name: str
    source: str  # file name of the program; Java's is the public class name + .java
    run: tuple[str, ...]
    version: tuple[str, ...]
    apt: str  # the Debian package that provides the toolchain
    compile: tuple[str, ...] | None = None
    compile_is_check: bool = False  # a syntax check only: nothing is built
    env: dict[str, str] = field(default_factory=dict)
    python: bool = False  # run in-process by the fork server
    extra_memory_mb: int = 0  # runtime overhead on top of the program's limit (JVM, V8)

    def source_name(self, code: str) -> str:
        if self.name == "java":
            return f"{java_class_name(code)}.java"
        return self.source

    def format(self, argv: tuple[str, ...], *, build: str, code: str, memory_mb: int) -> list[str]:
        values = {"build": build, "src": f"{build}/{self.source_name(code)}", "mem": str(memory_mb)}
        if self.name == "java":
            values["cls"] = java_class_name(code)
        return [a.format(**values) for a in argv]


LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in [
        Language(
            "python",
            "main.py",
            run=("python3",),
            version=("python3", "--version"),
            apt="python3",
            python=True,
        ),
        Language(
            "c",
            "main.c",
            compile=("gcc", "-O2", "-std=gnu17", "-pipe", "-static", "-o", "{build}/main", "{src}", "-lm"),
            run=("{build}/main",),
            version=("gcc", "--version"),
            apt="gcc",
        ),
        Language(
            "cpp",
            "main.cpp",
            compile=("g++", "-O2", "-std=gnu++17", "-pipe", "-static", "-o", "{build}/main", "{src}"),
            run=("{build}/main",),
            version=("g++", "--version"),
            apt="g++",
        ),
        Language(
            "java",
            "Main.java",
            compile=(
                "javac",
                "-J-Xmx512m",
                "-J-XX:-UsePerfData",
                "-encoding",
                "UTF-8",
                "-d",
                "{build}",
                "{src}",
            ),
            run=(
                "java",
                "-Xmx{mem}m",
                "-Xss64m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData",
                "-cp",
                "{build}",
                "{cls}",
            ),
            version=("javac", "-version"),
            apt="default-jdk-headless",
            extra_memory_mb=384,
        ),
        Language(
            "javascript",
            "main.js",
            compile=("node", "--check", "{src}"),
            compile_is_check=True,
            run=("node", "--max-old-space-size={mem}", "--stack-size=65500", "{src}"),
            version=("node", "--version"),
            apt="nodejs",
            extra_memory_mb=128,
        ),
        Language(
            "rust",
            "main.rs",
            compile=("rustc", "-O", "--edition", "2021", "-o", "{build}/main", "{src}"),
            run=("{build}/main",),
            version=("rustc", "--version"),
            apt="rustc",
        ),
        Language(
            "go",
            "main.go",
            compile=("go", "build", "-o", "{build}/main", "{src}"),
            run=("{build}/main",),
            version=("go", "version"),
            apt="golang-go",
            env={"CGO_ENABLED": "0", "GO111MODULE": "off", "GOMEMLIMIT": "{mem}MiB"},
        ),
        Language(
            "bash",
            "main.sh",
            compile=("bash", "-n", "{src}"),
            compile_is_check=True,
            run=("bash", "{src}"),
            version=("bash", "--version"),
            apt="bash",
        ),
        Language(
            "ruby",
            "main.rb",
            compile=("ruby", "-c", "{src}"),
            compile_is_check=True,
            run=("ruby", "{src}"),
            version=("ruby", "--version"),
            apt="ruby",
        ),
        Language(
            "php",
            "main.php",
            compile=("php", "-l", "{src}"),
            compile_is_check=True,
            run=("php", "-d", "memory_limit={mem}M", "{src}"),
            version=("php", "--version"),
            apt="php-cli",
        ),
        Language(
            "lua",
            "main.lua",
            compile=("luac5.4", "-p", "{src}"),
            compile_is_check=True,
            run=("lua5.4", "{src}"),
            version=("lua5.4", "-v"),
            apt="lua5.4",
        ),
    ]
}

_JAVA_PUBLIC_CLASS = re.compile(
    r"^\s*public\s+(?:(?:final|abstract|strictfp)\s+)*class\s+([A-Za-z_$][\w$]*)", re.M
)
_JAVA_MAIN_CLASS = re.compile(
    r"class\s+([A-Za-z_$][\w$]*)[^{]*\{(?:(?!\bclass\b).)*?public\s+static\s+void\s+main\s*\(", re.S
)


def java_class_name(code: str) -> str:
    """The public class (which must name the file), else the class with `main`, else `Main`."""
    match = _JAVA_PUBLIC_CLASS.search(code) or _JAVA_MAIN_CLASS.search(code)
    return match.group(1) if match else "Main"


def get_language(name: str) -> Language:
    try:
        return LANGUAGES[name]
    except KeyError:
        raise ValueError(f"unknown language {name!r}: expected one of {', '.join(LANGUAGES)}") from None


def toolchain_commands(lang: Language) -> list[str]:
    commands = [lang.version[0], lang.run[0]]
    if lang.compile:
        commands.append(lang.compile[0])
    return [c for c in dict.fromkeys(commands) if not c.startswith("{")]


def missing_toolchain(lang: Language) -> str | None:
    """The first command of this language not found on the sandbox PATH, or None."""
    for cmd in toolchain_commands(lang):
        if shutil.which(cmd, path=SANDBOX_PATH) is None:
            return cmd
    return None


def require_toolchain(lang: Language) -> None:
    cmd = missing_toolchain(lang)
    if cmd is not None:
        raise ToolchainMissing(
            f"language {lang.name!r} needs `{cmd}`, which is not installed: `apt-get install {lang.apt}` "
            "(or `make system-deps`)"
        )


def toolchain_version(lang: Language) -> str | None:
    """The first line the version command prints, or None when the toolchain is missing."""
    if missing_toolchain(lang) is not None:
        return None
    path = shutil.which(lang.version[0], path=SANDBOX_PATH)
    proc = subprocess.run([path, *lang.version[1:]], capture_output=True, text=True, timeout=30)  # type: ignore[list-item]
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "unknown version"
