"""What both backends share: a pool of slots, each a fork server (`_server.py`) behind a channel.

A program travels to a slot as one `run` request (write the source, compile once, seal the build,
run each input) and comes back as one reply per step. `SlotPool` keeps every slot busy: a slot is
sent its next program while the current one runs (`Slot.depth` requests in flight), so no slot
waits for a round trip between programs. A slot whose server dies is restarted and its programs in
flight are retried once. The backends only say how a slot's server is started.
"""

from __future__ import annotations

import base64
import collections
import functools
import importlib.util
import json
import logging
import marshal
import os
import queue
import select
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.languages import SANDBOX_PATH, Language, get_language
from sandbox.types import Limits, RunRequest, RunResult, SandboxError, Status

log = logging.getLogger("sandbox")

INSIDE = "/sandbox"  # where build/ and work/ are, inside the isolation
BUILD = f"{INSIDE}/build"
COMPILE_OUTPUT_BYTES = 1 << 20
PRECOMPILE_MAX_CHARS = 1 << 16
HOST_PYTHON_MAGIC = importlib.util.MAGIC_NUMBER.hex()
WRITE_CHUNK = 4096  # at most this much per write once select says writable: a write never blocks
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
    channel: Channel | None
    depth: int  # programs in flight: 2 overlaps the round trip with the running program

    def split(self, request: Message) -> list[Message]:
        """The requests that carry one program's `run` request: one, or steps to send one by one
        (only with `depth` 1)."""
        ...

    def before_send(self, request: Message) -> None: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class Channel:
    """Length-prefixed JSON messages over a pair of file descriptors, with a timeout per reply."""

    def __init__(self, read_fd: int, write_fd: int, name: str, on_failure: Callable[[], str]) -> None:
        self.read_fd, self.write_fd, self.name, self.on_failure = read_fd, write_fd, name, on_failure
        self._inbox = bytearray()

    def call(self, msg: Message, timeout: float) -> Message:
        """Send one request and wait for its one reply (nothing else may be in flight)."""
        return self.pump(bytearray(frame(msg)), timeout)[0]

    def receive(self, timeout: float) -> Message:
        """The next message (nothing else may be in flight)."""
        return self.pump(bytearray(), timeout)[0]

    def pump(self, out: bytearray, timeout: float) -> list[Message]:
        """Write what `out` holds (consuming it) while reading replies; return the replies complete so
        far, waiting up to `timeout` for the first. Reading and writing together is what lets a caller
        send its next requests while the server answers: neither side can block the other.
        """
        while True:
            replies = self._parse()
            if replies:
                return replies
            writers = [self.write_fd] if out else []
            try:
                readable, writable, _ = select.select([self.read_fd], writers, [], timeout)
            except (OSError, ValueError) as e:  # a closed descriptor: the slot was killed
                raise WorkerDied(f"{self.name} went away: {e}; {self.on_failure()}") from None
            if not readable and not writable:
                raise WorkerDied(f"{self.name} did not answer within {timeout:.0f} s")
            if writable:
                try:
                    del out[: os.write(self.write_fd, out[:WRITE_CHUNK])]
                except OSError as e:
                    raise WorkerDied(f"{self.name} went away: {e}; {self.on_failure()}") from None
            if readable:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    raise WorkerDied(f"{self.name} died: {self.on_failure()}")
                self._inbox += chunk

    def _parse(self) -> list[Message]:
        replies = []
        while len(self._inbox) >= 4:
            size = struct.unpack(">I", self._inbox[:4])[0]
            if len(self._inbox) < 4 + size:
                break
            replies.append(json.loads(self._inbox[4 : 4 + size]))
            del self._inbox[: 4 + size]
        return replies


def frame(msg: Message) -> bytes:
    data = json.dumps(msg).encode()
    return struct.pack(">I", len(data)) + data


@dataclass
class _Program:
    """One program of a call, from its request to its result."""

    index: int
    inputs: Sequence[str]
    make_request: Callable[[], Message]  # the server's `run` request, made by the driver that sends it
    reply_timeout: float  # seconds the server may take for the slowest step
    request: Message | None = None
    attempt: int = 1
    replies: list[Message] = field(default_factory=list)
    parts: collections.deque[Message] = field(default_factory=collections.deque)  # not sent yet


@dataclass
class _Batch:
    """The programs of one call, shared by its drivers (one per slot)."""

    out: list[ProgramResult | None]  # by request index, filled as programs finish
    todo: collections.deque[_Program] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    drivers: int = 0
    started: int = 0  # drivers that hold a slot

    def depth(self, slot: Slot) -> int:
        """How many programs `slot` may have in flight now (call with the lock held)."""
        ahead = self.started == self.drivers and len(self.todo) >= self.drivers
        return slot.depth if ahead else 1


class SlotPool:
    """Runs programs on `slots` from any number of threads; results come back in request order."""

    def __init__(
        self,
        slots: Sequence[Slot],
        require_toolchain: Callable[[Language], None],
        *,
        cap_memory: bool,
        python_magic: str | None = None,
    ) -> None:
        self.slots = list(slots)
        self.python_magic = python_magic  # the slots' Python bytecode version (see precompile)
        self.require_toolchain = require_toolchain
        self.cap_memory = cap_memory  # set RLIMIT_AS where no memory cgroup limits a job
        self._free: queue.Queue[Slot] = queue.Queue()
        for s in self.slots:
            self._free.put(s)
        self._executor = ThreadPoolExecutor(len(self.slots), thread_name_prefix="sandbox")
        self._closed = False

    def run(self, request: RunRequest) -> RunResult:
        return self.run_many([request])[0]

    def run_many(self, requests: Sequence[RunRequest]) -> list[RunResult]:
        programs = self._run_programs([(r.language, r.code, [r.stdin], r.limits, r.files) for r in requests])
        results = []
        for program in programs:
            result = program.results[0]
            if result.compile is None:
                result.compile = program.compile
            results.append(result)
        return results

    def run_cases(
        self,
        language: str,
        code: str,
        inputs: Sequence[str],
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
    ) -> ProgramResult:
        return self._run_programs([(language, code, inputs, limits, files)])[0]

    def _run_programs(
        self, specs: Sequence[tuple[str, str, Sequence[str], Limits | None, dict[str, str] | None]]
    ) -> list[ProgramResult]:
        """Every program, on as many slots as there are programs (at most all of them)."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        batch = _Batch([None] * len(specs))
        for i, (language, code, inputs, limits, files) in enumerate(specs):
            limits = limits or Limits()
            try:
                lang = get_language(language)
                self.require_toolchain(lang)
            except (ValueError, SandboxError) as e:
                batch.out[i] = _all_failed(inputs, str(e))
                continue
            make_request = functools.partial(
                run_request, lang, code, inputs, limits, files or {}, cap_memory=self.cap_memory,
                python_magic=self.python_magic,
            )  # fmt: skip
            timeout = max(limits.compile_time_limit_s * 2 + 30 if lang.compile else 0, limits.wall_s + 30)
            batch.todo.append(_Program(i, inputs, make_request, timeout))
        batch.drivers = min(len(batch.todo), len(self.slots))
        for driver in [self._executor.submit(self._drive, batch) for _ in range(batch.drivers)]:
            driver.result()
        assert all(r is not None for r in batch.out)
        return batch.out  # type: ignore[return-value]

    def _drive(self, batch: _Batch) -> None:
        """On one free slot: send programs of `batch` and read their replies until none is left.

        A slot is sent a program ahead of the one it runs (up to its `depth`) only while every driver
        of the batch has a slot and at least as many programs wait as there are drivers: a program
        queued behind a long one cannot move to an idle slot. A dead server is restarted and what it
        had in flight retried, once.
        """
        slot = self._free.get()
        try:
            with batch.lock:
                batch.started += 1
            inflight: collections.deque[_Program] = collections.deque()
            pending = bytearray()  # requests not written yet

            def send_part(program: _Program) -> None:
                part = program.parts.popleft()
                slot.before_send(part)
                pending.extend(frame(part))

            while True:
                while True:
                    with batch.lock:
                        if not batch.todo or len(inflight) >= batch.depth(slot):
                            break
                        program = batch.todo.popleft()
                    if program.request is None:  # made here, in parallel with the other drivers
                        program.request = program.make_request()
                    program.parts = collections.deque(slot.split(program.request))
                    inflight.append(program)
                    send_part(program)
                if not inflight:
                    return
                try:
                    if slot.channel is None:
                        raise WorkerDied(f"sandbox slot {slot.slot} is down")
                    for reply in slot.channel.pump(pending, inflight[0].reply_timeout):
                        head = inflight[0]
                        head.replies.append(reply)
                        if not reply.get("last"):
                            continue
                        if head.parts and reply.get("step") == "end":  # a step done: send the next
                            send_part(head)
                        else:
                            batch.out[head.index] = program_result(head.replies, len(head.inputs))
                            inflight.popleft()
                except WorkerDied as e:
                    pending.clear()
                    self._retry(slot, inflight, batch, e)
        finally:
            self._free.put(slot)

    def _retry(
        self, slot: Slot, inflight: collections.deque[_Program], batch: _Batch, error: WorkerDied
    ) -> None:
        """Restart a slot whose server died; its programs in flight go back to the front of the batch."""
        log.warning(
            "sandbox slot %d failed with %d program(s) in flight: %s", slot.slot, len(inflight), error
        )
        restart_error = None
        try:
            slot.restart()
        except SandboxError as e:  # the programs in flight fail; the next program tries the slot again
            restart_error = e
        with batch.lock:
            for program in reversed(inflight):
                if restart_error is not None:
                    message = f"{error}; restarting the slot failed: {restart_error}"
                    batch.out[program.index] = _all_failed(program.inputs, message)
                elif program.attempt == 2:
                    message = f"the sandbox failed twice on this program: {error}"
                    batch.out[program.index] = _all_failed(program.inputs, message)
                else:
                    program.attempt, program.replies = 2, []
                    batch.todo.appendleft(program)
            inflight.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        for s in self.slots:
            s.close()


def run_request(
    lang: Language,
    code: str,
    inputs: Sequence[str],
    limits: Limits,
    files: dict[str, str],
    *,
    cap_memory: bool,
    python_magic: str | None = None,
) -> Message:
    """The server's `run` request for `code` on each of `inputs`: see `Server.run_program`."""
    request: Message = {"op": "run", "stdins": list(inputs)}
    if not lang.python:  # Python compiles inside its job: a syntax error is found there
        request["program"] = {
            "files": {lang.source_name(code): code},
            "build_mb": max(256, limits.scratch_mb),
        }
        request["seal"] = True
    if lang.compile is not None:
        argv = lang.format(lang.compile, build=BUILD, code=code, memory_mb=limits.compile_memory_mb)
        request["compile"] = exec_msg(lang, argv, "", limits, compile_step=True, cap_memory=cap_memory)
    argv = lang.format(lang.run, build=BUILD, code=code, memory_mb=limits.memory_mb)
    request["exec"] = exec_msg(
        lang, argv, "", limits, compile_step=False, files=files, source=code, cap_memory=cap_memory,
        python_magic=python_magic,
    )  # fmt: skip
    return request


def precompile(source: str, path: str, python_magic: str | None) -> str | None:
    """`source` compiled to bytecode here (marshal, base64) when this interpreter's bytecode is the
    sandbox's (`python_magic`), else None.

    A compile in a job's freshly forked process costs 1.2 ms per HumanEval program (200 pages copied
    on first write, bench/sandbox.py), here 0.2 ms, and the job's `marshal.loads` 0.3 ms. Compiling
    runs none of the program. It compiles the bytes the job would read (so a coding cookie counts the
    same). A source over PRECOMPILE_MAX_CHARS, or one that does not compile, is compiled in the job,
    which reports the error as it always does.
    """
    if python_magic != HOST_PYTHON_MAGIC or len(source) > PRECOMPILE_MAX_CHARS:
        return None
    try:
        code = compile(source.encode("utf-8", "surrogateescape"), path, "exec", dont_inherit=True, optimize=0)
    except Exception:  # SyntaxError, RecursionError, ...: the job's own compile reports it
        return None
    return base64.b64encode(marshal.dumps(code)).decode("ascii")


def program_result(replies: Sequence[Message], num_inputs: int) -> ProgramResult:
    """The server's replies to one `run` request, as a `ProgramResult`."""
    compiled = None
    results = []
    for reply in replies:
        step = reply.get("step")
        if step == "setup":
            raise WorkerDied(f"sandbox server refused: {reply.get('error')}\n{reply.get('trace', '')}")
        if step == "compile":
            compiled = _result(reply)
            if compiled.status is not Status.OK:
                if compiled.status is not Status.SANDBOX_ERROR:
                    compiled.status = Status.COMPILE_ERROR
                failed = RunResult(status=compiled.status, stderr=compiled.stderr, compile=compiled)
                return ProgramResult(compiled, [failed for _ in range(num_inputs)])
        elif step == "case":
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
    python_magic: str | None = None,
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
        # The source travels once, as a scratch file; the job reads it from there (and tracebacks too).
        msg |= {"python": True, "path": f"{INSIDE}/work/{lang.source}"}
        msg["files"] = {**msg["files"], lang.source: source}
        bytecode = precompile(source, msg["path"], python_magic)
        if bytecode is not None:
            msg["bytecode"] = bytecode
    return msg


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
