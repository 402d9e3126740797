"""What both backends share: a pool of slots, each a fork server (`_server.py`) behind a channel.

`SlotPool` hands programs to free slots from many threads, restarts a slot whose server dies and
retries its program once; `run_program` is one program on one slot: write the source, compile once,
seal the build, run each input. The backends only say how a slot's server is started.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox.languages import SANDBOX_PATH, Language, get_language
from sandbox.types import Limits, RunRequest, RunResult, SandboxError, Status

log = logging.getLogger("sandbox")

INSIDE = "/sandbox"  # where build/ and work/ are, inside the isolation
BUILD = f"{INSIDE}/build"
COMPILE_OUTPUT_BYTES = 1 << 20
Message = dict[str, Any]


@dataclass
class ProgramResult:
    """One program run against several inputs: the compile step once, then one result per input."""

    compile: RunResult | None
    results: list[RunResult]


class WorkerDied(SandboxError):
    """A slot's server stopped answering; the pool restarts it."""


class Slot(Protocol):
    slot: int

    def call(self, msg: Message, timeout: float) -> Message: ...

    def stream(self, msg: Message, replies: int, timeout: float) -> list[Message]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class Channel:
    """Length-prefixed JSON messages over a pair of file descriptors, with a timeout per reply."""

    def __init__(self, read_fd: int, write_fd: int, name: str, on_failure: Callable[[], str]) -> None:
        self.read_fd, self.write_fd, self.name, self.on_failure = read_fd, write_fd, name, on_failure

    def send(self, msg: Message) -> None:
        data = json.dumps(msg).encode()
        try:
            _write_all(self.write_fd, struct.pack(">I", len(data)) + data)
        except OSError as e:
            raise WorkerDied(f"{self.name} went away: {e}; {self.on_failure()}") from None

    def receive(self, timeout: float) -> Message:
        header = self._read_exact(4, timeout)
        return json.loads(self._read_exact(struct.unpack(">I", header)[0], timeout))  # type: ignore[no-any-return]

    def call(self, msg: Message, timeout: float) -> Message:
        self.send(msg)
        return self.receive(timeout)

    def stream(self, msg: Message, replies: int, timeout: float) -> list[Message]:
        """Send one request that the server answers `replies` times; `timeout` is per reply."""
        self.send(msg)
        return [self.receive(timeout) for _ in range(replies)]

    def _read_exact(self, n: int, timeout: float) -> bytes:
        buf = b""
        while len(buf) < n:
            ready, _, _ = select.select([self.read_fd], [], [], timeout)
            if not ready:
                raise WorkerDied(f"{self.name} did not answer within {timeout:.0f} s")
            chunk = os.read(self.read_fd, n - len(buf))
            if not chunk:
                raise WorkerDied(f"{self.name} died: {self.on_failure()}")
            buf += chunk
        return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SlotPool:
    """Runs programs on `slots` from any number of threads; results come back in request order."""

    def __init__(
        self, slots: Sequence[Slot], require_toolchain: Callable[[Language], None], *, cap_memory: bool
    ) -> None:
        self.slots = list(slots)
        self.require_toolchain = require_toolchain
        self.cap_memory = cap_memory  # set RLIMIT_AS where no memory cgroup limits a job
        self._free: queue.Queue[Slot] = queue.Queue()
        for s in self.slots:
            self._free.put(s)
        self._executor = ThreadPoolExecutor(len(self.slots), thread_name_prefix="sandbox")
        self._closed = False

    def run(self, request: RunRequest) -> RunResult:
        program = self.run_cases(
            request.language, request.code, [request.stdin], request.limits, request.files
        )
        result = program.results[0]
        if result.compile is None:
            result.compile = program.compile
        return result

    def run_many(self, requests: Sequence[RunRequest]) -> list[RunResult]:
        return list(self._executor.map(self.run, requests))

    def run_cases(
        self,
        language: str,
        code: str,
        inputs: Sequence[str],
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
    ) -> ProgramResult:
        limits = limits or Limits()
        try:
            lang = get_language(language)
            self.require_toolchain(lang)
        except (ValueError, SandboxError) as e:
            return _all_failed(inputs, str(e))
        if self._closed:
            raise SandboxError("the sandbox is closed")
        slot = self._free.get()
        try:
            for attempt in (
                1,
                2,
            ):  # a slot whose server dies mid-program is restarted; the program retried once
                try:
                    return run_program(
                        slot, lang, code, inputs, limits, files or {}, cap_memory=self.cap_memory
                    )
                except WorkerDied as e:
                    log.warning("sandbox slot %d failed (attempt %d of 2): %s", slot.slot, attempt, e)
                    try:
                        slot.restart()
                    except SandboxError as restart_error:
                        return _all_failed(inputs, f"{e}; restarting the slot failed: {restart_error}")
                    if attempt == 2:
                        return _all_failed(inputs, f"the sandbox failed twice on this program: {e}")
            raise AssertionError("unreachable")
        finally:
            self._free.put(slot)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        for s in self.slots:
            s.close()


def run_program(
    slot: Slot,
    lang: Language,
    code: str,
    inputs: Sequence[str],
    limits: Limits,
    files: dict[str, str],
    *,
    cap_memory: bool,
) -> ProgramResult:
    """Compile `code` once on `slot`, then run it on each input."""
    compiled = None
    if not lang.python:  # Python compiles inside its job: a syntax error is found there
        program = {
            "op": "program",
            "files": {lang.source_name(code): code},
            "build_mb": max(256, limits.scratch_mb),
        }
        _check(slot.call(program, 30))
    if lang.compile is not None:
        argv = lang.format(lang.compile, build=BUILD, code=code, memory_mb=limits.compile_memory_mb)
        msg = exec_msg(lang, argv, "", limits, compile_step=True, cap_memory=cap_memory)
        compiled = _result(slot.call(msg, limits.compile_time_limit_s * 2 + 30))
        if compiled.status is not Status.OK:
            if compiled.status is not Status.SANDBOX_ERROR:
                compiled.status = Status.COMPILE_ERROR
            failed = RunResult(status=compiled.status, stderr=compiled.stderr, compile=compiled)
            return ProgramResult(compiled, [failed for _ in inputs])
    if not lang.python:
        _check(slot.call({"op": "seal"}, 30))
    argv = lang.format(lang.run, build=BUILD, code=code, memory_mb=limits.memory_mb)
    run = exec_msg(
        lang, argv, "", limits, compile_step=False, files=files, source=code, cap_memory=cap_memory
    )
    # All inputs in one request: the server starts each case as the last one ends, with no round trip.
    replies = slot.stream(
        {"op": "cases", "exec": run, "stdins": list(inputs)}, len(inputs), limits.wall_s + 30
    )
    results = []
    for reply in replies:
        result = _result(reply)
        if result.status is Status.COMPILE_ERROR:  # Python's compile happens in the job itself
            result.compile = compiled = RunResult(status=Status.COMPILE_ERROR, stderr=result.stderr)
        results.append(result)
    return ProgramResult(compiled, results)


def exec_msg(
    lang: Language,
    argv: list[str],
    stdin: str,
    limits: Limits,
    *,
    compile_step: bool,
    cap_memory: bool,
    files: dict[str, str] | None = None,
    source: str = "",
) -> Message:
    """The server's `exec` request for one compile or one run."""
    env = {"PATH": SANDBOX_PATH, "HOME": f"{INSIDE}/work", "TMPDIR": f"{INSIDE}/work", "LANG": "C.UTF-8"}
    if compile_step:
        env |= {
            "HOME": BUILD,
            "TMPDIR": BUILD,
            "GOCACHE": f"{INSIDE}/cache/go",
            "GOPATH": f"{INSIDE}/cache/gopath",
        }
    env |= {k: v.format(mem=limits.memory_mb) for k, v in lang.env.items()}
    cpu_s = limits.compile_time_limit_s if compile_step else limits.time_limit_s
    memory_mb = limits.compile_memory_mb if compile_step else limits.memory_mb + lang.extra_memory_mb
    msg: Message = {
        "op": "exec",
        "argv": argv,
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
        # RLIMIT_AS breaks the JVM, Node and Go; it is the fallback only where no memory cgroup is.
        "rlimit_as": cap_memory and lang.name in ("python", "c", "cpp", "rust"),
    }
    if lang.python and not compile_step:
        # The source travels once, as a scratch file; the job reads it from there.
        msg |= {"python": True, "path": f"{INSIDE}/work/{lang.source}"}
        msg["files"] = {**msg["files"], lang.source: source}
    return msg


def _check(reply: Message) -> None:
    if not reply.get("ok"):
        raise WorkerDied(f"sandbox server refused: {reply.get('error')}\n{reply.get('trace', '')}")


def _result(reply: Message) -> RunResult:
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
