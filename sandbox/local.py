"""`LocalSandbox`: untrusted programs on this machine, in warm isolated fork servers.

What is contained, with every primitive active (`python -m sandbox doctor` says which are):
- network: none. Each slot's server lives in its own network namespace (bubblewrap), whose
  loopback is not the host's, so TCP, UDP and DNS reach nothing.
- filesystem: a private root holding read-only /usr and /etc only; /tmp is an empty read-only
  tmpfs; the host's /root, /home, /tmp, the project and its secrets are not there. The one writable
  place is the job's scratch directory, a size-limited tmpfs emptied for each job (mounted anew
  unless the last job left only a few plain files there).
- processes: own pid namespace (the host's processes are invisible), a uid per slot (not root),
  a pids cgroup and RLIMIT_NPROC against fork and thread bombs; after each job every process of
  that uid is killed, daemons and `nohup` included.
- environment: cleared; a job sees PATH, HOME, TMPDIR and LANG only.
- resources: CPU time (RLIMIT_CPU), wall clock (the server kills the job), memory (a memory
  cgroup; RLIMIT_AS would break the JVM, Node and Go), file size, open files, output (the reader
  stops at `output_mb` per stream).
- syscalls: seccomp denies ptrace, mount, namespaces, bpf, keyctl, kexec, modules, ... (EPERM).

What is not contained: kernel exploits (there is no VM boundary: use `DockerSandbox` or a VM per
node for hostile-by-design code), CPU cache side channels, and timing interference between slots.
When a primitive is missing here, the sandbox still runs and logs one warning naming what is not
contained.

A Python job costs a fork of a process that has the interpreter and common modules loaded, not an
interpreter start, and that fork happens ahead of time: each slot's zygote (a copy of the server,
holding the seccomp filter, rlimits and standard streams that jobs inherit) prepares the next job's
process (fork, session, OOM score, descriptors) while the current job runs, so a request only sends
it its limits and program, compiled to bytecode by the caller when the two Pythons share a bytecode
version. Other languages start through a small C exec helper
(`spawn.c`) that the server posix_spawns, with no copy of its page tables; compiled languages compile
once per program (`run_cases`, C and C++ linked statically: no dynamic loader per run) and then
spawn the binary per test case. A program and all of its test cases travel in one request and come
back one reply each, and a slot is sent its next program while one runs, so no job waits for a round
trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox.isolation import Isolation, SlotCgroups, probe, sweep_leftovers
from sandbox.languages import SANDBOX_PATH, require_toolchain
from sandbox.pool import INSIDE, Channel, Message, ProgramResult, SlotPool
from sandbox.spawner import helper_path
from sandbox.types import Limits, RunRequest, RunResult, SandboxError

log = logging.getLogger("sandbox")

SERVER = Path(__file__).with_name("_server.py")
_warned = False


class LocalSlot:
    """One slot: a fork server process inside bubblewrap's namespaces, spoken to over its stdin/stdout."""

    depth = 2  # the next program waits in the server's stdin while the current one runs

    def __init__(
        self,
        slot: int,
        uid: int | None,
        isolation: Isolation,
        state_dir: Path,
        helper: Path | None,
        preload: dict[str, str] | None = None,
        cpu: int | None = None,
    ) -> None:
        self.slot = slot
        self.cpu = cpu  # the one CPU its server, zygote and jobs run on, or None (see `slot_cpus`)
        self.preload = preload or {}
        self.helper = helper
        self.uid = uid
        self.isolation = isolation
        self.state_dir = state_dir
        self.cgroups = SlotCgroups(isolation, f"grpo-sandbox-{os.getpid()}-{id(self):x}/slot{slot}")
        self.cache = state_dir / f"cache{slot}"  # the Go build cache: written by compilers only, per slot
        self.cache.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            os.chown(self.cache, uid, uid)
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.python_magic: str | None = None  # the server's Python bytecode version, from its hello
        self.stderr_path = state_dir / f"server{slot}.log"
        self.start()

    @property
    def sandboxed(self) -> bool:
        return self.isolation.bwrap is not None and self.isolation.root

    def argv(self) -> list[str]:
        iso = self.isolation
        config: dict[str, Any] = {
            "uid": self.uid,
            "root": INSIDE if self.sandboxed else str(self.state_dir / f"slot{self.slot}"),
            "mount_scratch": self.sandboxed,
            "cgroups": {
                c: f"{INSIDE}/cg/{c}" if self.sandboxed else str(p) for c, p in self.cgroups.dirs.items()
            },
            "cgroup_version": iso.cgroup_version or 1,
            "seccomp": iso.seccomp,
            "preload": self.preload,
            "cpu": self.cpu,
            "spawn": None
            if self.helper is None
            else f"{INSIDE}/spawn"
            if self.sandboxed
            else str(self.helper),
        }
        python = shutil.which("python3", path=SANDBOX_PATH) or "/usr/bin/python3"
        if not self.sandboxed:
            return [python, "-I", "-S", str(SERVER), json.dumps(config)]
        argv = [iso.bwrap or "bwrap", "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]  # fmt: skip
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            p = Path("/") / top
            if p.is_symlink():
                argv += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                argv += ["--ro-bind", str(p), str(p)]
        argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                 "--tmpfs", "/tmp", "--remount-ro", "/tmp", "--tmpfs", "/dev/shm", "--remount-ro", "/dev/shm",
                 "--dir", f"{INSIDE}/build", "--dir", f"{INSIDE}/work",
                 "--ro-bind", str(SERVER), f"{INSIDE}/server.py", "--bind", str(self.cache), f"{INSIDE}/cache"]  # fmt: skip
        if self.helper is not None:
            argv += ["--ro-bind", str(self.helper), f"{INSIDE}/spawn"]
        for controller, path in self.cgroups.dirs.items():
            argv += ["--bind", str(path), f"{INSIDE}/cg/{controller}"]
        argv += ["--remount-ro", "/", "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--chdir", INSIDE,
                 python, "-I", "-S", f"{INSIDE}/server.py", json.dumps(config)]  # fmt: skip
        return argv

    def start(self) -> None:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.channel = Channel(
            self.proc.stdout.fileno(), self.proc.stdin.fileno(), f"sandbox slot {self.slot}", self.stderr_tail
        )
        hello = self.channel.receive(timeout=30)
        self.python_magic = hello.get("python_magic")
        if not hello.get("ready"):
            raise SandboxError(f"sandbox slot {self.slot} did not start: {hello}")

    def split(self, request: Message) -> list[Message]:
        return [request]

    def before_send(self, request: Message) -> None:
        pass

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:].strip() or "(no message)"
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self.proc = None
        self.channel = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        self.cgroups.close()


def slot_cpus(workers: int, pin: bool | None = None) -> list[int | None]:
    """The CPU each slot's processes are pinned to: CPUs this process may use, in turn; or None each.

    Unpinned, a slot's server woken by its job's exit is often queued on the other busy core and waits
    out that job's time slice (2-3 ms) while its own core idles: measured with `perf sched`, cores
    idle 10% of a `run_many` of the HumanEval programs on 2 slots; pinned, 2-3%, and the batch runs
    11-15% faster. By default (`pin=None`) slots are pinned only when every allowed CPU gets the same
    number of them (`workers` a multiple of the CPU count), so that sandboxes made that way, in one
    process or several, share the cores evenly; any other count is left to the kernel's balancing.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if pin is False or (pin is None and workers % len(cpus)):
        return [None] * workers
    return [cpus[i % len(cpus)] for i in range(workers)]


def _close(pool: SlotPool, state: Path) -> None:
    pool.close()
    shutil.rmtree(state, ignore_errors=True)


class LocalSandbox:
    """Runs programs in `workers` isolated slots on this machine; thread-safe, results in request order.

    Args:
        workers: number of slots (fork servers), by default one per core.
        require_isolation: raise instead of warning when an isolation primitive is unavailable.
        preload: Python modules (name -> source) that each slot's server runs once at start, so that
            jobs `import` them already loaded: a test harness shared by every job, for example. The
            source is the caller's trusted code; jobs get a forked copy of the module, as of every
            pre-imported one.
        pin_cpus: pin each slot's server, zygote and jobs to one CPU, the slots taking the CPUs this
            process may use in turn (`slot_cpus`): True, False, or None to pin only when `workers` is a
            multiple of their count.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        require_isolation: bool = False,
        preload: dict[str, str] | None = None,
        pin_cpus: bool | None = None,
    ) -> None:
        self.isolation = probe()
        if not self.isolation.complete:
            missing = "\n".join(
                f"  - {p.name}: {p.detail}" for p in self.isolation.primitives() if not p.active
            )
            if require_isolation:
                raise SandboxError(f"isolation is incomplete on this machine:\n{missing}")
            global _warned
            if not _warned:
                log.warning("SANDBOX ISOLATION IS INCOMPLETE; not contained:\n%s", missing)
                _warned = True
        self.num_workers = workers or os.cpu_count() or 1
        self.preload = dict(preload or {})
        # Named after our pid, as the slots' cgroups are: what a killed process left is swept here.
        sweep_leftovers(self.isolation, Path(tempfile.gettempdir()))
        self._state = Path(tempfile.mkdtemp(prefix=f"grpo-sandbox-{os.getpid()}-"))
        os.chmod(self._state, 0o711)
        # A uid per slot, distinct between sandboxes of different processes.
        uid_base = 200_000 + (os.getpid() % 10_000) * 64 if self.isolation.root else None
        helper = helper_path()
        cpus = slot_cpus(self.num_workers, pin_cpus)
        self._slots = [
            LocalSlot(
                i,
                None if uid_base is None else uid_base + i,
                self.isolation,
                self._state,
                helper,
                preload,
                cpus[i],
            )
            for i in range(self.num_workers)
        ]
        self._pool = SlotPool(
            self._slots,
            require_toolchain,
            cap_memory="memory" not in self.isolation.cgroup_parents,
            python_magic=self._slots[0].python_magic,
        )
        # close() once: when called, when the sandbox is collected, or at interpreter exit, so a
        # sandbox nobody closed leaves no cgroup and no state folder behind.
        self._closer = weakref.finalize(self, _close, self._pool, self._state)

    def run(self, request: RunRequest) -> RunResult:
        return self._pool.run(request)

    def run_many(self, requests: Sequence[RunRequest]) -> list[RunResult]:
        """Run every request on all slots at once; the results come back in the order of `requests`."""
        return self._pool.run_many(requests)

    def run_cases(
        self,
        language: str,
        code: str,
        inputs: Sequence[str],
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
    ) -> ProgramResult:
        """Compile `code` once, then run it on each stdin in `inputs`, on one slot."""
        return self._pool.run_cases(language, code, inputs, limits, files)

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
