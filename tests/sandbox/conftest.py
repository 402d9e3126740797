import os
import time
from pathlib import Path

import pytest

from sandbox import LocalSandbox, RunRequest, Status


@pytest.fixture(scope="session")
def local_sandbox():
    with LocalSandbox(workers=2) as sb:
        yield sb


@pytest.fixture(scope="session")
def docker_sandbox(docker_engine):
    from sandbox.docker import DockerSandbox

    with DockerSandbox(workers=2) as sb:
        yield sb


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request):
    return request.getfixturevalue(f"{request.param}_sandbox")


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


def leftovers(sb, grace_s: float = 5.0) -> list[str]:
    """What is still running of past jobs: slot-uid processes (local), or more than the server (docker).

    A process the kernel is still tearing down (no command line left: a zombie, or mid-exit after a
    fork bomb was killed on a loaded machine) gets `grace_s` to disappear; one that stays is reported.
    """
    if isinstance(sb, LocalSandbox):
        uids = {s.uid for s in sb._slots if s.uid is not None}
        deadline = time.monotonic() + grace_s
        found = processes_of(uids)
        while found and all(p.endswith(": b''") for p in found) and time.monotonic() < deadline:
            time.sleep(0.1)
            found = processes_of(uids)
        return found
    found = []
    for slot in sb._slots:
        processes = slot.container.top()["Processes"]
        found += [" ".join(p) for p in processes if "server.py" not in " ".join(p)]
    return found


@pytest.fixture
def contained(sandbox):
    """After the test: nothing of the job is left, and a normal job runs normally."""
    yield sandbox
    assert leftovers(sandbox) == []
    after = sandbox.run_many([RunRequest("python", "print(sum(range(10)))")] * 2)
    assert [(r.status, r.stdout) for r in after] == [(Status.OK, "45\n")] * 2


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-slot uids and tmpfs scratch need root")
