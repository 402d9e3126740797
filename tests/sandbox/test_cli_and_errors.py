"""The command line, and clear errors for an unknown language, a missing toolchain and bad limits."""

import json
import subprocess
import sys

import pytest

from sandbox import LANGUAGES, Language, Limits, RunRequest, Status, languages


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, **kw)


def test_run_prints_one_json_result(tmp_path):
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\nint main(void){int x; scanf("%d",&x); printf("%d\\n", 2*x);}'
    )
    (tmp_path / "in.txt").write_text("21\n")
    proc = cli(
        "run",
        str(tmp_path / "main.c"),
        "--language",
        "c",
        "--stdin",
        str(tmp_path / "in.txt"),
        "--time-limit",
        "1",
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert (result["status"], result["stdout"], result["exit_code"]) == ("ok", "42\n", 0)
    assert result["compile"]["status"] == "ok" and set(result) >= {"time_s", "memory_mb", "stderr"}


def test_languages_lists_every_toolchain_version():
    proc = cli("languages")
    lines = dict(line.split(None, 1) for line in proc.stdout.strip().splitlines())
    assert set(lines) == set(LANGUAGES)
    assert "gcc" in lines["c"] and "MISSING" not in proc.stdout and proc.returncode == 0


def test_doctor_reports_every_primitive_active():
    proc = cli("doctor")
    assert proc.returncode == 0, proc.stdout
    assert "complete" in proc.stdout and "[ ]" not in proc.stdout


def test_unknown_language_is_a_sandbox_error_naming_the_choices(local_sandbox):
    r = local_sandbox.run(RunRequest("cobol", "DISPLAY 'HI'."))
    assert r.status is Status.SANDBOX_ERROR
    assert "unknown language 'cobol'" in r.stderr and "python" in r.stderr


def test_missing_toolchain_names_the_apt_package(local_sandbox, monkeypatch):
    fake = Language("fortran", "main.f90", compile=("gfortran-99", "{src}"), run=("{build}/a.out",),
                    version=("gfortran-99", "--version"), apt="gfortran")  # fmt: skip
    monkeypatch.setitem(languages.LANGUAGES, "fortran", fake)
    r = local_sandbox.run(RunRequest("fortran", "end"))
    assert r.status is Status.SANDBOX_ERROR
    assert "`gfortran-99`, which is not installed: `apt-get install gfortran`" in r.stderr


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_bad_limits_are_refused(seconds):
    with pytest.raises(ValueError, match=r"Limits\.time_limit_s must be a finite number > 0"):
        Limits(time_limit_s=seconds)


def test_run_cli_bad_input_is_a_one_line_error(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("print(1)\n")
    missing = cli("run", str(tmp_path / "nope.py"), "--language", "python")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"cannot read {tmp_path / 'nope.py'}: No such file or directory" in missing.stderr
    no_stdin = cli("run", str(prog), "--language", "python", "--stdin", str(tmp_path))
    assert no_stdin.returncode == 2 and f"cannot read {tmp_path}: Is a directory" in no_stdin.stderr
    for flag, value in [("--time-limit", "-1"), ("--time-limit", "nan"), ("--memory-mb", "0")]:
        bad = cli("run", str(prog), "--language", "python", flag, value)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert "must be a finite number > 0" in bad.stderr
