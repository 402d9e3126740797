"""Adversarial tests: each tries to break one promise of the sandbox's containment, on the local
backend and on the Docker backend against a real engine.

Each ends with the right status, nothing of the job left behind, and a normal job running normally
afterwards (the `contained` fixture checks the last two).
"""

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox import Limits, LocalSandbox, RunRequest, Status
from sandbox.isolation import probe
from tests.sandbox.conftest import requires_root

pytestmark = requires_root
QUICK = Limits(time_limit_s=1.0)


def run(sb, code, language="python", **kw):
    return sb.run(RunRequest(language, code, **kw))


def test_python_fork_bomb(contained):
    r = run(
        contained,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        limits=QUICK,
    )
    assert r.status is Status.TIMEOUT


def test_c_fork_bomb(contained):
    r = run(contained, "#include <unistd.h>\nint main(void) { for (;;) fork(); }", "c", limits=QUICK)
    assert r.status is Status.TIMEOUT


def test_thread_bomb(contained):
    code = (
        "import threading, time\nn = 0\ntry:\n    while True:\n"
        "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n        n += 1\n"
        "except RuntimeError:\n    print('threads', n)\n"
    )
    r = run(contained, code, limits=QUICK)
    assert r.status is Status.OK and int(r.stdout.split()[1]) < 200  # a pids limit stopped it


def test_cpu_loop(contained):
    r = run(contained, "while True: pass", limits=QUICK)
    assert r.status is Status.TIMEOUT and r.time_s < 3


def test_sub_second_cpu_limit_is_kept(contained):  # RLIMIT_CPU alone would allow a whole second
    loop, honest = contained.run_many(
        [
            RunRequest("python", "while True: pass", limits=Limits(time_limit_s=0.2)),
            RunRequest("python", "sum(range(10**5))\nprint('done')", limits=Limits(time_limit_s=0.2)),
        ]
    )
    assert loop.status is Status.TIMEOUT and loop.time_s < 0.5
    assert (honest.status, honest.stdout) == (Status.OK, "done\n")


def test_sleep_hits_the_wall_clock(contained):
    r = run(contained, "import time\ntime.sleep(60)", limits=QUICK)
    assert r.status is Status.TIMEOUT and 2.9 <= r.time_s < 5  # wall limit 2 * 1 + 1 s


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "x = bytearray(10 * 1024**3)\nprint(len(x))"),
        ("c", "#include <stdlib.h>\nint main(void) { size_t n = 10UL << 30; volatile char *p = malloc(n);"
         " if (!p) return 3; for (size_t i = 0; i < n; i += 4096) p[i] = 1; return 0; }"),
    ],
)  # fmt: skip
def test_10gb_allocation(contained, language, code):
    r = run(contained, code, language, limits=Limits(time_limit_s=5, memory_mb=256))
    assert r.status is Status.MEMORY_LIMIT, r


def test_page_cache_charged_to_the_slot_does_not_widen_the_memory_limit(tmp_path):
    """Files an earlier job read (a toolchain, a compiler cache) stay charged to the slot's memory cgroup
    as page cache. The kernel takes that back when a job needs room, so it is no part of the job's limit:
    with 300 MB of it charged, a 64 MB job still cannot hold 200 MB."""
    with LocalSandbox(workers=1) as sb:
        memory = sb._slots[0].cgroups.dirs.get("memory")
        if memory is None:
            pytest.skip("no writable memory cgroup here: the container's limit applies instead")
        fill = tmp_path / "cache"  # on disk, not tmpfs: page cache, not shared memory
        charge = f"echo $$ > {memory}/cgroup.procs && dd if=/dev/zero of={fill} bs=1M count=300 status=none"
        subprocess.run(["sh", "-c", charge], check=True)
        subprocess.run(["sync"], check=True)
        big = RunRequest("python", "x = bytearray(200 * 1024**2)\nprint('held')", limits=Limits(memory_mb=64))
        small = RunRequest(
            "python", "x = bytearray(30 * 1024**2)\nprint('held')", limits=Limits(memory_mb=64)
        )
        over, under = sb.run(big), sb.run(small)
    assert over.status is Status.MEMORY_LIMIT, over
    assert (under.status, under.stdout) == (Status.OK, "held\n")
    assert 25 <= under.memory_mb < 64  # the job's own 30 MB, not the cache


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_2gb_of_output_is_cut_at_the_cap(contained, stream):
    code = f"import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(2048):\n    sys.{stream}.write(chunk)"
    r = run(contained, code, limits=Limits(time_limit_s=10, output_mb=4))
    assert r.status is Status.OUTPUT_LIMIT
    assert len(getattr(r, stream)) == 4 << 20 and getattr(r, f"{stream}_truncated")


def test_tcp_udp_and_dns_reach_nothing(contained):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    tcp.settimeout(0.5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    code = f"""
import socket
import subprocess
import sys
for name, attempt in [
    ("tcp", lambda: socket.create_connection(("127.0.0.1", {tcp.getsockname()[1]}), timeout=1)),
    ("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {udp.getsockname()[1]}))),
    ("dns", lambda: socket.getaddrinfo("pypi.org", 443)),
]:
    try:
        attempt()
        print(name, "open")
    except OSError as e:
        print(name, "blocked")
"""
    r = run(contained, code)
    assert r.status is Status.OK
    with pytest.raises(OSError):  # timeout: nothing connected
        tcp.accept()
    with pytest.raises(OSError):
        udp.recvfrom(10)
    lines = r.stdout.split("\n")
    assert "tcp blocked" in lines and "dns blocked" in lines
    # UDP sendto may "succeed" into the sandbox's own empty loopback; what matters is nothing arrived.
    tcp.close()
    udp.close()


def test_writes_outside_scratch_fail_and_leave_nothing(contained):
    name = f"sandbox-escape-{uuid.uuid4().hex}"
    targets = ["/tmp", "/root", "/etc", "/dev/shm", "/var/tmp", "/", "/usr"]
    code = f"""
for d in {targets!r}:
    try:
        open(d + "/{name}", "w").write("pwned")
        print(d, "written")
    except OSError:
        print(d, "refused")
"""
    r = run(contained, code)
    assert r.status is Status.OK
    assert "written" not in r.stdout
    assert not [d for d in targets if Path(d, name).exists()]


def test_host_secrets_are_invisible(contained, tmp_path, monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("GRPO_TEST_SECRET", secret)
    files = [tmp_path / "secret.txt", Path.home() / f".grpo-test-secret-{secret}"]
    for f in files:
        f.write_text(secret)
    try:
        code = f"""
import os
print(os.environ.get("GRPO_TEST_SECRET"))
print(sorted(os.environ))
for path in {[str(f) for f in files]!r}:
    try:
        print(open(path).read())
    except OSError as e:
        print("refused", type(e).__name__)
"""
        r = run(contained, code)
    finally:
        files[1].unlink()
    assert r.status is Status.OK and secret not in r.stdout
    assert "['HOME', 'LANG', 'PATH', 'TMPDIR']" in r.stdout


def test_host_processes_are_invisible(contained):
    code = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    r = run(contained, code)
    pids = eval(r.stdout)
    # bwrap's init, the server, the zygote, the job and the next job's prepared process
    assert r.status is Status.OK and len(pids) <= 5


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                   "        time.sleep(300)\n    os._exit(0)\nprint('parent exits')"),
        ("bash", "nohup sleep 300 >/dev/null 2>&1 &\necho started"),
    ],
)  # fmt: skip
def test_daemons_are_killed_after_the_job(contained, language, code):
    r = run(contained, code, language)
    assert r.status is Status.OK  # the job itself ended; what it left behind is killed (fixture)


def test_killing_the_parent_does_not_kill_the_server(contained):
    # Local: the server is another uid (EPERM). Docker: it is pid 1, which ignores the signal.
    code = "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError as e:\n    pass\nprint('alive')"
    r = run(contained, code)
    assert (r.status, r.stdout) == (Status.OK, "alive\n")


def test_file_descriptor_exhaustion(contained):
    code = "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\nexcept OSError:\n    print(len(fs))"
    r = run(contained, code)
    assert r.status is Status.OK and int(r.stdout) < Limits().max_open_files


def test_filling_the_scratch_disk(contained):
    code = "n = 0\ntry:\n    with open('big', 'wb') as f:\n        while True:\n            f.write(b'x' * (1 << 20))\n            n += 1\nexcept OSError as e:\n    print(n, e.errno)"
    r = run(contained, code, limits=Limits(scratch_mb=16))
    written_mb, errno = map(int, r.stdout.split())
    assert r.status is Status.OK and written_mb <= 16 and errno in (27, 28)  # EFBIG or ENOSPC
    again = run(contained, "import os\nprint(sorted(os.listdir('.')))")
    assert "big" not in again.stdout


SCRATCH_MESS = """import os, sys
what = sys.stdin.read()
if what.startswith("mess"):
    open("a", "w").write("x")
    os.symlink("/etc/passwd", "link")
    if "dir" in what:
        os.mkdir("d")
        open("d/f", "w").write("y")
    if "fifo" in what:
        os.mkfifo("pipe")
    try:
        os.setxattr(".", "user.note", b"left")
    except OSError:
        pass
    os.utime(".", (12345, 12345))
    os.chmod(".", 0o700)
else:
    st = os.stat(".")
    print(sorted(os.listdir(".")), oct(st.st_mode & 0o777), os.listxattr("."), st.st_mtime != 12345)
"""


@pytest.mark.parametrize("mess", ["mess", "mess dir", "mess fifo"])
def test_the_next_job_finds_a_fresh_scratch(mess):
    """Whatever a job leaves in its scratch (files, a symlink, a directory, a fifo, an xattr, its own
    mode and times), the next job on the slot finds only its own source in a new-looking scratch.
    The scratch is emptied in place when it holds plain files only, else mounted anew."""
    with LocalSandbox(workers=1) as sb:
        program = sb.run_cases("python", SCRATCH_MESS, [mess, "look"])
    assert [r.status for r in program.results] == [Status.OK, Status.OK]
    assert program.results[1].stdout == "['main.py'] 0o755 [] True\n"


def test_seccomp_denies_namespaces_and_ptrace(contained):
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())\n"
    )
    r = run(contained, code)
    assert r.status is Status.OK and r.stdout.split("\n")[:2] == ["-1 1", "-1 1"]  # EPERM


def test_many_threads_share_the_sandbox(contained):  # run() from 8 threads at once
    results = {}

    def worker(i):
        results[i] = contained.run(RunRequest("python", f"print({i})"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: (r.status, r.stdout) for i, r in results.items()} == {
        i: (Status.OK, f"{i}\n") for i in range(8)
    }


@requires_root
def test_close_during_a_job_leaves_no_process_and_no_cgroup():
    """Closing the sandbox while jobs run (close waits for them to time out) leaves none of their
    processes and none of the slots' cgroups, though the kernel refuses to remove a cgroup until its
    killed tasks are torn down: before, every slot's cgroups were left behind."""
    marker = uuid.uuid4().hex
    sb = LocalSandbox(workers=2)
    dirs = [d for slot in sb._slots for d in slot.cgroups.dirs.values()]
    if not dirs:
        sb.close()
        pytest.skip("no writable cgroup here")
    code = f"import subprocess, time\nsubprocess.Popen(['sh', '-c', 'sleep 60', '{marker}'])\ntime.sleep(60)"
    request = RunRequest("python", code, limits=Limits(time_limit_s=2))
    threading.Thread(target=sb.run_many, args=([request] * 2,), daemon=True).start()
    deadline = time.monotonic() + 20
    while subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.count(marker) < 2:
        assert time.monotonic() < deadline, "the jobs never started"
        time.sleep(0.05)
    sb.close()
    assert [d for d in dirs if d.exists()] == []
    assert marker not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@requires_root
def test_a_sandbox_nobody_closed_is_cleaned_up_at_exit():
    """A process that exits without closing its sandbox leaves neither cgroups nor a state folder."""
    script = (
        "from sandbox import LocalSandbox, RunRequest\n"
        "sb = LocalSandbox(workers=2)\n"
        "assert sb.run(RunRequest('python', 'print(1)')).stdout == '1\\n'\n"
        "print(sb._state)\n"
        "print(*[d for slot in sb._slots for d in slot.cgroups.dirs.values()], sep='\\n')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    state, dirs = Path(out[0]), [Path(d) for d in out[1:]]
    assert not state.exists()
    assert [d for d in dirs if d.exists()] == []


@requires_root
def test_a_new_sandbox_sweeps_what_killed_processes_left(tmp_path):
    """A process killed with SIGKILL leaves its slots' cgroups and its state folder; the next sandbox
    made on the machine removes them, and leaves alone those of a live process."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    isolation = probe()
    if not isolation.cgroup_parents:
        pytest.skip("no writable cgroup here")
    tmp = Path(tempfile.gettempdir())
    left, kept = [], []
    for pid, into in ((dead.pid, left), (1, kept)):
        for parent in set(isolation.cgroup_parents.values()):
            slot = parent / f"grpo-sandbox-{pid}-feed/slot0"
            slot.mkdir(parents=True)
            into.append(slot.parent)
        state = tmp / f"grpo-sandbox-{pid}-test"
        (state / "cache0").mkdir(parents=True)
        into.append(state)
    try:
        LocalSandbox(workers=1).close()
        assert [p for p in left if p.exists()] == []
        assert [p for p in kept if not p.exists()] == []
    finally:
        for folder in left + kept:
            if folder.parent == tmp:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for slot in folder.glob("slot*"):
                slot.rmdir()
            with contextlib.suppress(FileNotFoundError):
                folder.rmdir()
