"""Soak: 20,000 mixed jobs, honest and hostile, through one LocalSandbox lose nothing and leak nothing.

Every job comes back with its own verdict, and after a warm-up batch nothing of the test process
(open file descriptors, threads, RSS), of the slots' uids (processes) or of the sandbox's state dir
(bytes on disk) grows. About 1 job in 20 is hostile; each hostile job is cheap (a fraction of a
second) so the whole run takes a few minutes on 2 cores.
"""

import contextlib
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import Limits, LocalSandbox, RunRequest, RunResult, Status
from tests.sandbox.conftest import leftovers, requires_root

pytestmark = [pytest.mark.slow, requires_root]

TOTAL_JOBS = 20_000
BATCHES = 20
HOSTILE_EVERY = 21  # 20 honest jobs, then 1 hostile one
C_CASES_PER_BATCH = 50  # of each batch's jobs, these run as test cases of one compiled C program
RSS_SLACK_MB = 50

ESCAPE = f"/etc/grpo-soak-{uuid.uuid4().hex}"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
C_ECHO = '#include <stdio.h>\nint main(void) { int a, b; scanf("%d %d", &a, &b); printf("%d\\n", a + b); }'


@dataclass(frozen=True)
class Job:
    request: RunRequest
    status: Status
    stdout: str | None = None  # the exact stdout expected, where it is known
    stdout_len: int | None = None  # for output bombs: exactly the cap was kept


HOSTILE = [
    Job(
        RunRequest("python", FORK_BOMB, limits=Limits(time_limit_s=0.2, wall_time_limit_s=0.5)),
        Status.TIMEOUT,
    ),
    Job(
        RunRequest("python", "x = bytearray(1 << 30)\nprint(len(x))", limits=Limits(memory_mb=64)),
        Status.MEMORY_LIMIT,
        stdout="",
    ),
    Job(
        RunRequest(
            "python",
            "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(50):\n    sys.stdout.write(chunk)",
            limits=Limits(output_mb=1),
        ),
        Status.OUTPUT_LIMIT,
        stdout_len=1 << 20,
    ),
    Job(RunRequest("bash", "nohup sleep 300 >/dev/null 2>&1 &\necho started"), Status.OK, "started\n"),
    Job(
        RunRequest(
            "python",
            "try:\n    print(open('/etc/shadow').read())\nexcept OSError as e:\n    print('refused', type(e).__name__)",
        ),
        Status.OK,
        "refused PermissionError\n",
    ),
    Job(
        RunRequest(
            "python",
            f"try:\n    open({ESCAPE!r}, 'w').write('pwned')\n    print('written')\n"
            "except OSError:\n    print('refused')",
        ),
        Status.OK,
        "refused\n",
    ),
]


def honest(i: int) -> Job:
    if i % 2:
        return Job(RunRequest("python", f"print({i} * 3)"), Status.OK, f"{3 * i}\n")
    return Job(RunRequest("python", "print(int(input()) + 1)", stdin=f"{i}\n"), Status.OK, f"{i + 1}\n")


def batch_jobs(first: int, n: int) -> list[Job]:
    """Jobs number `first` to `first + n - 1`: honest ones, every 21st hostile, rotating through HOSTILE."""
    jobs = []
    for k in range(n):
        i = first + k
        hostile = i % HOSTILE_EVERY == HOSTILE_EVERY - 1
        jobs.append(HOSTILE[(i // HOSTILE_EVERY) % len(HOSTILE)] if hostile else honest(i))
    return jobs


def mismatch(job: Job, r: RunResult) -> str | None:
    if (
        r.status is not job.status
        or (job.stdout is not None and r.stdout != job.stdout)
        or (job.stdout_len is not None and (len(r.stdout) != job.stdout_len or not r.stdout_truncated))
    ):
        code = job.request.code.replace("\n", "; ")[:60]
        return f"{code!r}: expected {job.status.value}, got {r.status.value} {r.stdout[:40]!r} {r.stderr[-200:]!r}"
    return None


def resources(sb: LocalSandbox) -> dict[str, float]:
    rss_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    state_bytes = state_entries = 0
    for dirpath, dirnames, filenames in os.walk(sb._state):
        state_entries += len(dirnames) + len(filenames)
        for name in filenames:
            with contextlib.suppress(FileNotFoundError):
                state_bytes += os.lstat(os.path.join(dirpath, name)).st_size
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "slot_processes": len(leftovers(sb)),  # processes of the slot uids
        "rss_mb": rss_kb / 1024,
        "state_bytes": state_bytes,
        "state_entries": state_entries,
    }


def test_20000_mixed_jobs_lose_nothing_and_leak_nothing():
    start = time.perf_counter()
    per_batch = TOTAL_JOBS // BATCHES
    done, statuses, wrong = 0, Counter(), []
    with LocalSandbox(workers=2) as sb:
        for batch in range(BATCHES):
            jobs = batch_jobs(batch * per_batch, per_batch - C_CASES_PER_BATCH)
            results = sb.run_many([j.request for j in jobs])
            assert len(results) == len(jobs)
            inputs = [f"{batch} {k}\n" for k in range(C_CASES_PER_BATCH)]
            program = sb.run_cases("c", C_ECHO, inputs)
            assert program.compile is not None and program.compile.ok, program.compile
            jobs += [
                Job(RunRequest("c", C_ECHO, stdin=s), Status.OK, f"{sum(map(int, s.split()))}\n")
                for s in inputs
            ]
            results += program.results
            assert len(results) == per_batch
            done += len(results)
            statuses.update(r.status.value for r in results)
            wrong += [m for j, r in zip(jobs, results, strict=True) if (m := mismatch(j, r))]
            if batch == 0:  # after the warm-up batch
                before = resources(sb)
        after = resources(sb)
    seconds = time.perf_counter() - start
    print(
        f"\n{done} jobs in {seconds:.1f} s ({done / seconds:.0f} jobs/s): {dict(statuses)}\nbefore {before}\nafter  {after}"
    )

    assert done == TOTAL_JOBS
    assert wrong == [], f"{len(wrong)} jobs got the wrong verdict, e.g.:\n" + "\n".join(wrong[:10])
    assert not Path(ESCAPE).exists()
    assert after["fds"] <= before["fds"], (before, after)
    assert after["threads"] <= before["threads"], (before, after)
    assert after["slot_processes"] == before["slot_processes"] == 0, (before, after)
    assert after["rss_mb"] - before["rss_mb"] < RSS_SLACK_MB, (before, after)
    assert after["state_bytes"] <= before["state_bytes"], (before, after)
    assert after["state_entries"] <= before["state_entries"], (before, after)
