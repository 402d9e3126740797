"""Compile once and run many inputs; a dead slot is restarted and its program retried, not lost."""

import logging
import os
import signal
import threading

import pytest

from sandbox import Limits, LocalSandbox, RunRequest, Status

ADD = '#include <stdio.h>\nint main(void) { long a, b; scanf("%ld %ld", &a, &b); printf("%ld\\n", a + b); }'


def test_run_cases_compiles_once_and_runs_every_input(sandbox):
    program = sandbox.run_cases("c", ADD, [f"{i} {i}\n" for i in range(20)])
    assert program.compile is not None and program.compile.status is Status.OK
    assert [r.stdout for r in program.results] == [f"{2 * i}\n" for i in range(20)]


def test_compile_error_fails_every_case_with_the_compiler_message(sandbox):
    program = sandbox.run_cases("c", "int main(void) { return x; }", ["1\n", "2\n"])
    assert [r.status for r in program.results] == [Status.COMPILE_ERROR] * 2
    assert "error:" in program.compile.stderr and "undeclared" in program.compile.stderr


def test_a_case_cannot_alter_the_build_for_the_next_case(local_sandbox):
    code = (
        "import os, sys\n"
        "for p in ['/sandbox/build/main.py', '/sandbox/build/x']:\n"
        "    try:\n        open(p, 'w').write('print(666)')\n        print('wrote', p)\n"
        "    except OSError:\n        pass\n"
        "print(open('state').read() if os.path.exists('state') else 'fresh')\n"
        "open('state', 'w').write('dirty')\n"
    )
    program = local_sandbox.run_cases("python", code, ["", ""])
    assert [r.stdout for r in program.results] == ["fresh\n", "fresh\n"]  # work dir is new per case


def test_each_job_gets_its_own_limits(sandbox):
    tight, loose = sandbox.run_many(
        [
            RunRequest("python", "x = bytearray(200 * 1024**2)\nprint('ok')", limits=Limits(memory_mb=64)),
            RunRequest("python", "x = bytearray(200 * 1024**2)\nprint('ok')", limits=Limits(memory_mb=512)),
        ]
    )
    assert tight.status is Status.MEMORY_LIMIT
    assert (loose.status, loose.stdout) == (Status.OK, "ok\n")


def test_a_dead_slot_is_restarted_and_the_program_retried():
    with LocalSandbox(workers=1) as sb:
        slot = sb._slots[0]
        os.killpg(slot.proc.pid, signal.SIGKILL)  # the server dies between jobs
        slot.proc.wait()
        r = sb.run(RunRequest("python", "print('after')"))
        assert (r.status, r.stdout) == (Status.OK, "after\n")
        assert slot.proc is not None and slot.proc.poll() is None  # a new server runs


def test_a_slot_dying_twice_is_a_sandbox_error_not_a_verdict():
    with LocalSandbox(workers=1) as sb:
        slot = sb._slots[0]
        real_start = slot.start

        def start_then_die():
            real_start()
            os.killpg(slot.proc.pid, signal.SIGKILL)
            slot.proc.wait()

        os.killpg(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait()
        slot.start = start_then_die
        r = sb.run(RunRequest("python", "print(1)"))
        assert r.status is Status.SANDBOX_ERROR and "failed twice" in r.stderr


def test_programs_in_flight_on_a_dying_slot_are_all_retried(caplog):
    """A slot is sent its next program while one runs; when its server dies, both are retried."""
    with LocalSandbox(workers=1) as sb:
        slot = sb._slots[0]
        requests = [RunRequest("python", f"import time\ntime.sleep(0.5)\nprint({i})") for i in range(3)]
        killer = threading.Timer(0.25, lambda: os.killpg(slot.proc.pid, signal.SIGKILL))
        killer.start()
        with caplog.at_level(logging.WARNING, logger="sandbox"):
            results = sb.run_many(requests)
        killer.join()
    assert [(r.status, r.stdout) for r in results] == [(Status.OK, f"{i}\n") for i in range(3)]
    assert "with 2 program(s) in flight" in caplog.text


def _descendants(pid: int) -> list[int]:
    """Every process under `pid`, parents before children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        with open(f"/proc/{p}/task/{p}/children") as f:
            children = [int(c) for c in f.read().split()]
        found += children
        todo += children
    return found


def test_a_dead_zygote_restarts_the_slot(caplog):
    """The zygote forks every Python job; if it dies the server exits, so the slot is restarted and
    the program retried, as for a dead server."""
    with LocalSandbox(workers=1) as sb:
        slot = sb._slots[0]
        if not slot.sandboxed:
            pytest.skip("no bubblewrap here")
        assert sb.run(RunRequest("python", "print(1)")).stdout == "1\n"
        server_before = slot.proc.pid
        # bwrap -> bwrap's init -> the server -> the zygote -> the next job's prepared process
        zygote = _descendants(slot.proc.pid)[2]
        with open(f"/proc/{zygote}/stat") as f:
            assert f.read().split()[3] == str(_descendants(slot.proc.pid)[1])  # a child of the server
        os.kill(zygote, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="sandbox"):
            r = sb.run(RunRequest("python", "print('after')"))
        assert (r.status, r.stdout) == (Status.OK, "after\n")
        assert slot.proc.pid != server_before and "zygote" in caplog.text


AFFINITY = "import os; print(*sorted(os.sched_getaffinity(0)))"
AFFINITY_C = """#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
int main(void) { cpu_set_t s; sched_getaffinity(0, sizeof s, &s);
  for (int i = 0; i < CPU_SETSIZE; i++) if (CPU_ISSET(i, &s)) printf("%d ", i); printf("\\n"); }
"""


def _cpus_seen(sb: LocalSandbox, jobs: int) -> list[list[int]]:
    results = sb.run_many([RunRequest("python", AFFINITY)] * jobs + [RunRequest("c", AFFINITY_C)] * jobs)
    assert all(r.status is Status.OK for r in results), [r.stderr for r in results]
    return [[int(c) for c in r.stdout.split()] for r in results]


def test_slots_are_pinned_one_cpu_each_when_they_divide_the_cpus_evenly():
    allowed = sorted(os.sched_getaffinity(0))
    with LocalSandbox(workers=len(allowed)) as sb:
        seen = _cpus_seen(sb, 4 * len(allowed))
        assert all(len(cpus) == 1 and cpus[0] in allowed for cpus in seen)  # Python jobs and exec'd ones
        assert [slot.cpu for slot in sb._slots] == allowed  # one slot per CPU
    if len(allowed) > 1:
        with LocalSandbox(workers=len(allowed) + 1) as sb:  # uneven: left to the kernel
            assert all(cpus == allowed for cpus in _cpus_seen(sb, 4))
    with LocalSandbox(workers=len(allowed), pin_cpus=False) as sb:
        assert all(cpus == allowed for cpus in _cpus_seen(sb, 4))
