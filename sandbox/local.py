"""`LocalSandbox`: untrusted programs on this machine, in warm isolated fork servers.

What is contained, with every primitive active (`python -m sandbox doctor` says which are):
- network: none. Each slot's server lives in its own network namespace (bubblewrap), whose
  loopback is not the host's, so TCP, UDP and DNS reach nothing.
- filesystem: a private root holding read-only /usr and /etc only; /tmp is an empty read-only
  tmpfs; the host's /root, /home, /tmp, the project and its secrets are not there. The one writable
  place is the job's scratch directory, a fresh size-limited tmpfs per job.
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

A Python job costs a fork of a server that has the interpreter and common modules loaded, not an
interpreter start. Compiled languages compile once per program (`run_cases`) and then fork and exec
the binary per test case.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.isolation import Isolation, SlotCgroups, probe
from sandbox.languages import SANDBOX_PATH, Language, get_language, require_toolchain
from sandbox.types import Limits, RunRequest, RunResult, SandboxError, Status

log = logging.getLogger("sandbox")

SERVER = Path(__file__).with_name("_server.py")
INSIDE = "/sandbox"  # where build/ and work/ are, inside the isolation
BUILD = f"{INSIDE}/build"
COMPILE_OUTPUT_BYTES = 1 << 20
_warned = False


@dataclass
class ProgramResult:
    """One program run against several inputs: the compile step once, then one result per input."""

    compile: RunResult | None
    results: list[RunResult]


class WorkerDied(SandboxError):
    pass


class _Worker:
    """One slot: a fork server process inside the isolation, spoken to over its stdin/stdout."""

    def __init__(self, slot: int, uid: int | None, isolation: Isolation, state_dir: Path) -> None:
        self.slot = slot
        self.uid = uid
        self.isolation = isolation
        self.state_dir = state_dir
        self.cgroups = SlotCgroups(isolation, f"grpo-sandbox-{os.getpid()}-{id(self):x}/slot{slot}")
        self.cache = state_dir / f"cache{slot}"  # the Go build cache: compilers only, per slot
        self.cache.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            os.chown(self.cache, uid, uid)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = state_dir / f"server{slot}.log"
        self.start()

    def argv(self) -> list[str]:
        iso = self.isolation
        sandboxed = iso.bwrap is not None and iso.root
        inside = (
            {c: f"{INSIDE}/cg/{c}" for c in self.cgroups.dirs}
            if sandboxed
            else {c: str(p) for c, p in self.cgroups.dirs.items()}
        )
        config: dict[str, Any] = {
            "uid": self.uid,
            "root": INSIDE if sandboxed else str(self.state_dir / f"slot{self.slot}"),
            "mount_scratch": sandboxed,
            "cgroups": inside,
            "cgroup_version": iso.cgroup_version or 1,
            "seccomp": iso.seccomp,
        }
        python = shutil.which("python3", path=SANDBOX_PATH) or "/usr/bin/python3"
        if not sandboxed:
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
        hello = self._read(timeout=30)
        if not hello.get("ready"):
            raise SandboxError(f"sandbox server {self.slot} did not start: {hello}")

    def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerDied(f"sandbox server {self.slot} is not running")
        data = json.dumps(msg).encode()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"sandbox server {self.slot} went away: {e}") from None
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        header = self._read_exact(fd, 4, timeout)
        return json.loads(self._read_exact(fd, struct.unpack(">I", header)[0], timeout))  # type: ignore[no-any-return]

    def _read_exact(self, fd: int, n: int, timeout: float) -> bytes:
        buf = b""
        while len(buf) < n:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                self.kill()
                raise WorkerDied(f"sandbox server {self.slot} did not answer within {timeout:.0f} s")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                self.kill()
                raise WorkerDied(f"sandbox server {self.slot} died: {self.stderr_tail()}")
            buf += chunk
        return buf

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

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        self.cgroups.close()


class LocalSandbox:
    """Runs `RunRequest`s in `workers` isolated slots; thread-safe, results in request order.

    Args:
        workers: number of slots (fork servers), by default one per core.
        require_isolation: raise instead of warning when a primitive is unavailable.
    """

    def __init__(self, workers: int | None = None, *, require_isolation: bool = False) -> None:
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
        self._state = Path(tempfile.mkdtemp(prefix="grpo-sandbox-"))
        os.chmod(self._state, 0o711)
        uid_base = 200_000 + (os.getpid() % 10_000) * 64 if self.isolation.root else None
        self._workers = [
            _Worker(i, None if uid_base is None else uid_base + i, self.isolation, self._state)
            for i in range(self.num_workers)
        ]
        self._free: queue.Queue[_Worker] = queue.Queue()
        for w in self._workers:
            self._free.put(w)
        self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="sandbox")
        self._closed = False

    # -- public API ---------------------------------------------------------------------------------
    def run(self, request: RunRequest) -> RunResult:
        result = self.run_cases(
            request.language, request.code, [request.stdin], request.limits, request.files
        )
        run = result.results[0]
        if run.compile is None:
            run.compile = result.compile
        return run

    def run_many(self, requests: Sequence[RunRequest]) -> list[RunResult]:
        """Run every request on all slots at once; the results come back in the order of `requests`."""
        return list(self._pool.map(self.run, requests))

    def run_cases(
        self,
        language: str,
        code: str,
        inputs: Sequence[str],
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
    ) -> ProgramResult:
        """Compile `code` once, then run it on each stdin in `inputs`, on one slot."""
        limits = limits or Limits()
        try:
            lang = get_language(language)
            require_toolchain(lang)
        except (ValueError, SandboxError) as e:
            return _all_failed(inputs, f"{e}")
        worker = self._acquire()
        try:
            for attempt in (1, 2):  # a server that dies mid-program is restarted and the program retried once
                try:
                    return self._run_program(worker, lang, code, inputs, limits, files or {})
                except WorkerDied as e:
                    log.warning("sandbox slot %d failed (attempt %d): %s", worker.slot, attempt, e)
                    try:
                        worker.restart()
                    except SandboxError as restart_error:
                        return _all_failed(inputs, f"{e}; restart failed: {restart_error}")
                    if attempt == 2:
                        return _all_failed(inputs, str(e))
            raise AssertionError("unreachable")
        finally:
            self._free.put(worker)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        for w in self._workers:
            w.close()
        shutil.rmtree(self._state, ignore_errors=True)

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one program on one slot ----------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        return self._free.get()

    def _run_program(
        self,
        worker: _Worker,
        lang: Language,
        code: str,
        inputs: Sequence[str],
        limits: Limits,
        files: dict[str, str],
    ) -> ProgramResult:
        compiled = None
        if not lang.python:  # Python compiles inside its job: a syntax error is found there
            source = lang.source_name(code)
            reply = worker.call(
                {"op": "program", "files": {source: code}, "build_mb": max(256, limits.scratch_mb)}, 30
            )
            _check(reply)
        if lang.compile is not None:
            argv = lang.format(lang.compile, build=BUILD, code=code, memory_mb=limits.compile_memory_mb)
            msg = self._exec_msg(lang, argv, "", limits, compile_step=True)
            compiled = _result(worker.call(msg, limits.compile_time_limit_s * 2 + 30))
            if compiled.status is not Status.OK:
                if compiled.status is not Status.SANDBOX_ERROR:
                    compiled.status = Status.COMPILE_ERROR
                failed = RunResult(status=compiled.status, stderr=compiled.stderr, compile=compiled)
                return ProgramResult(compiled, [failed for _ in inputs])
        if not lang.python:
            _check(worker.call({"op": "seal"}, 30))
        argv = lang.format(lang.run, build=BUILD, code=code, memory_mb=limits.memory_mb)
        results = []
        for stdin in inputs:
            msg = self._exec_msg(lang, argv, stdin, limits, compile_step=False, files=files, source=code)
            result = _result(worker.call(msg, limits.wall_s + 30))
            if result.status is Status.COMPILE_ERROR:  # Python's compile happens in the job itself
                compiled = RunResult(status=Status.COMPILE_ERROR, stderr=result.stderr)
                result.compile = compiled
            results.append(result)
        return ProgramResult(compiled, results)

    def _exec_msg(
        self,
        lang: Language,
        argv: list[str],
        stdin: str,
        limits: Limits,
        *,
        compile_step: bool,
        files: dict[str, str] | None = None,
        source: str = "",
    ) -> dict[str, Any]:
        memory_mb = limits.compile_memory_mb if compile_step else limits.memory_mb + lang.extra_memory_mb
        cpu_s = limits.compile_time_limit_s if compile_step else limits.time_limit_s
        env = {"PATH": SANDBOX_PATH, "HOME": f"{INSIDE}/work", "TMPDIR": f"{INSIDE}/work", "LANG": "C.UTF-8"}
        if compile_step:
            env |= {
                "HOME": BUILD,
                "TMPDIR": BUILD,
                "GOCACHE": f"{INSIDE}/cache/go",
                "GOPATH": f"{INSIDE}/cache/gopath",
            }
        env |= {k: v.format(mem=limits.memory_mb) for k, v in lang.env.items()}
        resolved = shutil.which(argv[0], path=SANDBOX_PATH) if not argv[0].startswith("/") else argv[0]
        msg: dict[str, Any] = {
            "op": "exec",
            "argv": [resolved or argv[0], *argv[1:]],
            "cwd": "build" if compile_step else "work",
            "stdin": stdin,
            "env": env,
            "files": files or {},
            "cpu_s": cpu_s,
            "wall_s": cpu_s * 2 + 1 if compile_step else limits.wall_s,
            "memory_mb": memory_mb,
            "pids": max(limits.max_processes, 256) if compile_step else limits.max_processes,
            "nofile": max(limits.max_open_files, 1024) if compile_step else limits.max_open_files,
            "output_bytes": COMPILE_OUTPUT_BYTES if compile_step else int(limits.output_mb * (1 << 20)),
            "fsize_bytes": max(limits.scratch_mb, 256) << 20 if compile_step else limits.scratch_mb << 20,
            "scratch_mb": limits.scratch_mb,
            "rlimit_as": lang.name in ("python", "c", "cpp", "rust"),
        }
        if lang.python and not compile_step:
            msg |= {"python": True, "source": source, "path": f"{INSIDE}/work/{lang.source}"}
            msg["files"] = {**msg["files"], lang.source: source}
        return msg


def _check(reply: dict[str, Any]) -> None:
    if not reply.get("ok"):
        raise WorkerDied(f"sandbox server refused: {reply.get('error')}\n{reply.get('trace', '')}")


def _result(reply: dict[str, Any]) -> RunResult:
    if "compile_error" in reply:
        reply = {**reply, "status": "compile_error", "stderr": reply["compile_error"]}
    if reply.get("error"):
        reply = {**reply, "status": "sandbox_error", "stderr": reply["error"]}
    return RunResult(
        status=Status(reply["status"]),
        exit_code=reply.get("exit_code"),
        stdout=reply.get("stdout", ""),
        stderr=reply.get("stderr", ""),
        time_s=reply.get("time_s", 0.0),
        memory_mb=reply.get("memory_mb", 0.0),
        stdout_truncated=reply.get("stdout_truncated", False),
        stderr_truncated=reply.get("stderr_truncated", False),
    )


def _all_failed(inputs: Sequence[str], message: str) -> ProgramResult:
    return ProgramResult(None, [RunResult(status=Status.SANDBOX_ERROR, stderr=message) for _ in inputs])
