import os
from pathlib import Path

import pytest

from sandbox import LocalSandbox, RunRequest, Status


@pytest.fixture(scope="session")
def local_sandbox():
    with LocalSandbox(workers=2) as sb:
        yield sb


def processes_of(uids: set[int]) -> list[str]:
    """Host-side view: every process owned by one of the sandbox's slot uids."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{entry.name}: {cmdline!r}")
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def slot_uids(sb) -> set[int]:
    return {w.uid for w in sb._slots if w.uid is not None}


@pytest.fixture
def contained(local_sandbox):
    """After the test: nothing of the job is left on the host, and a normal job runs normally."""
    yield local_sandbox
    assert processes_of(slot_uids(local_sandbox)) == []
    after = local_sandbox.run_many([RunRequest("python", "print(sum(range(10)))")] * 2)
    assert [(r.status, r.stdout) for r in after] == [(Status.OK, "45\n")] * 2


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-slot uids and tmpfs scratch need root")
