"""The fork server: one per sandbox slot, running inside the isolation that the backend set up
(bubblewrap namespaces for the local backend, a container for the Docker backend).

It is a standalone standard-library script (run as `python3 -I -S _server.py ...`), so it starts
in milliseconds, keeps common modules imported for Python jobs, and never sees the caller's
site-packages. It is root inside its namespaces; every job runs in a forked child that joins the
slot's cgroups, sets its rlimits, installs a seccomp filter, drops to the slot's uid and only then
runs the untrusted program. The next job's process is forked (by the zygote, see `Zygote`) and
confined as far as it can be while the current job runs, so a Python job starts as soon as its
request arrives. After each job every process of that uid is killed and the scratch is emptied.

Protocol on fds 0 and 1 (or a unix socket): each message is a 4-byte big-endian length and a JSON
object. A `run` request (one program: its source, compile step and inputs) is answered step by
step (`run_program`); any other request by one reply. The caller may send the next request before
the replies to this one have come: it waits in the pipe.
"""

from __future__ import annotations

# Pre-imported for Python jobs: a forked child finds them loaded. Only light, common modules: every module
# here grows the memory that each job's fork copies and its exit tears down. Dropping ast, dataclasses,
# decimal, fractions, hashlib, random and statistics (20 -> 15 MB resident, 106 -> 90 mappings) cut
# the CPU per HumanEval job by about 5% (bench/sandbox.py); a job that imports them pays for it itself.
import atexit
import binascii
import bisect  # noqa: F401
import collections  # noqa: F401
import contextlib
import copy  # noqa: F401
import ctypes
import functools  # noqa: F401
import gc
import heapq  # noqa: F401
import io
import itertools
import json
import marshal
import math  # noqa: F401
import operator  # noqa: F401
import os
import re  # noqa: F401
import resource
import select
import shutil
import signal
import socket
import string  # noqa: F401
import struct
import sys
import time
import traceback
import typing  # noqa: F401
from collections.abc import Iterator
from typing import Any, NamedTuple

LIBC = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
STATUS_FD = 3  # a job's setup errors travel back on this fd; it closes on exec
GO_FD = 4  # a prepared job's request arrives on this fd
READ_CHUNK = 1 << 16

# x86_64 syscalls a job never needs and that widen the attack surface: refused with EPERM.
DENIED_SYSCALLS = {
    "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
    "setns": 308, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "acct": 163, "settimeofday": 164,
    "clock_settime": 227, "process_vm_readv": 310, "process_vm_writev": 311, "userfaultfd": 323,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "quotactl": 179, "move_mount": 429,
    "fsopen": 430, "fsmount": 432, "open_tree": 428, "io_uring_setup": 425,
}  # fmt: skip
SYS_CLONE, SYS_CLONE3 = 56, 435
CLONE_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET


Msg = dict[str, Any]


class Prepared(NamedTuple):
    """A job's process and the server's ends of its pipes."""

    pid: int
    pidfd: int
    go: int  # the request is written here, then closed (-1 once sent, or for a spawned job)
    stdin_w: int
    out_r: int
    err_r: int
    st_r: int
    zygote: bool = False  # forked (and reaped) by the zygote, not by the server


class Server:
    def __init__(self, config: Msg) -> None:
        self.uid: int | None = config.get("uid")
        self.root: str = config["root"]  # holds build/ and work/
        self.mount_scratch: bool = config.get("mount_scratch", False)
        self.cgroups: dict[str, str] = config.get("cgroups", {})  # controller -> writable dir
        self.cgroup_version: int = config.get("cgroup_version", 1)
        self.seccomp: bool = config.get("seccomp", False)
        # In a container the server and its jobs share one uid, and the container is the pid namespace:
        # leftovers are every process but init and the server.
        self.container: bool = config.get("container", False)
        self.spawn: str | None = config.get("spawn")  # the exec helper (spawn.c), for non-Python jobs
        self.listen: str | None = config.get("listen")  # a unix socket to serve on instead of fds 0/1
        # Where to read OOM kills when no writable memory cgroup is ours (the container's own cgroup).
        self.memory_stats: str | None = self.cgroups.get("memory") or config.get("memory_stats")
        self.build = os.path.join(self.root, "build")
        self.work = os.path.join(self.root, "work")
        os.makedirs(self.build, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        self.seccomp_prog = SeccompProgram() if self.seccomp else None
        self.limits_set: dict[str, str] = {}  # cgroup files already holding a value
        self.scratch_sizes: dict[str, int] = {}  # tmpfs mounted here -> its size in MB
        self.cg_fds: dict[tuple[str, int], int] = {}
        self.held = 0  # the memory charge a job cannot reclaim (the server's own), subtracted from its peak
        self.ready: Prepared | None = None  # the next job's process, prepared while the caller was busy
        self.zygote: Zygote | None = None  # forks the Python jobs (not in a container: see Zygote)
        self.in_zygote = False  # jobs inherit job_defaults from the zygote, set once there
        cpu: int | None = config.get("cpu")
        if cpu is not None:  # the zygote and every job inherit it (see `slot_cpus` in local.py)
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError as e:  # not fatal: the slot runs unpinned
                print(f"server: cannot pin to CPU {cpu}: {e}", file=sys.stderr, flush=True)
        # The server sits in the slot's cgroups itself, so a forked job is in them from birth: moving a
        # task into a v1 memory cgroup costs about a millisecond a job. A job makes itself the OOM
        # killer's first choice (oom_score_adj 1000), so the server is never the one killed.
        for directory in self.cgroups.values():
            _write(directory, "cgroup.procs", str(os.getpid()))

    # -- scratch -------------------------------------------------------------------------------
    def fresh_dir(self, path: str, size_mb: int, owner: int | None) -> None:
        """An empty `path` of `size_mb` for the next job: a new tmpfs, or the one there emptied when the
        last job left nothing in it but a few plain files (what most jobs leave: their source). A new
        tmpfs per job cost 0.4 ms of waiting at two jobs at once (umount waits for an RCU grace period)
        and 5% of the throughput of bench/sandbox.py."""
        if self.mount_scratch:
            uid = 0 if owner is None else owner
            if self.scratch_sizes.get(path) == size_mb and _empty_plain_dir(path, uid):
                return
            self.scratch_sizes.pop(path, None)
            LIBC.umount2(path.encode(), MNT_DETACH)  # fails harmlessly when nothing is mounted
            opts = f"size={size_mb}m,nr_inodes=16384,mode=0755,uid={uid},gid={uid}".encode()
            if LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")
            self.scratch_sizes[path] = size_mb
        else:
            remove_tree_contents(path)
            if owner is not None:
                os.chown(path, owner, owner)

    def write_files(self, base: str, files: dict[str, str], owner: int | None) -> None:
        for name, content in files.items():
            path = os.path.normpath(os.path.join(base, name))
            if not path.startswith(base + os.sep):
                raise ValueError(f"file name {name!r} leaves the scratch directory")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(content)
            if owner is not None:
                os.chown(path, owner, owner)

    def op_program(self, msg: Msg) -> Msg:
        """A new program: a fresh build dir holding its source, writable by the job uid for compiling."""
        self.fresh_dir(self.build, msg["build_mb"], self.uid)
        self.write_files(self.build, msg["files"], self.uid)
        return {"ok": True}

    def op_seal(self, msg: Msg) -> Msg:
        """After compiling: the build dir becomes root's and read-only, so runs cannot alter it.

        In a container (one uid for all) the files are made read-only, which the job could undo.
        """
        for dirpath, dirnames, filenames in os.walk(self.build):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    if self.uid is not None:
                        os.chown(p, 0, 0)
                    os.chmod(p, os.stat(p).st_mode & 0o555)
        if self.uid is not None:
            os.chown(self.build, 0, 0)
            os.chmod(self.build, 0o555)
        return {"ok": True}

    # -- running a job --------------------------------------------------------------------------
    def op_exec(self, msg: Msg) -> Msg:
        cwd = self.build if msg.get("cwd") == "build" else self.work
        if cwd == self.work:
            self.fresh_dir(self.work, msg["scratch_mb"], self.uid)
            self.write_files(self.work, msg.get("files", {}), self.uid)
        mem_before = self.memory_reset(msg["memory_mb"], msg["pids"])
        try:
            return self.run_job(msg, cwd, mem_before)
        finally:
            self.cleanup()

    def run_job(self, msg: Msg, cwd: str, oom_before: int) -> Msg:
        program = None
        if not msg.get("python"):
            argv0, path = msg["argv"][0], msg["env"].get("PATH")
            program = argv0 if "/" in argv0 else shutil.which(argv0, path=path)
            if program is None:
                return {"status": "sandbox_error", "error": f"setup: {argv0} is not installed in the sandbox"}
        if program is not None and self.spawn:
            stdin_r, stdin_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            st_r, st_w = os.pipe()
            start = time.monotonic()
            pid = self.spawn_job(msg, cwd, program, (stdin_r, out_w, err_w, st_w))
            for fd in (stdin_r, out_w, err_w, st_w):
                os.close(fd)
            job = Prepared(pid, os.pidfd_open(pid), -1, stdin_w, out_r, err_r, st_r)
        else:
            job, start = self.go(msg, cwd, program)
        result = self.supervise(job, msg, start)
        result["memory_mb"], oom = self.memory_report(oom_before)
        if oom and result["status"] in ("runtime_error", "ok", "timeout"):
            result["status"] = "memory_limit"
        return result

    def go(self, msg: Msg, cwd: str, program: str | None) -> tuple[Prepared, float]:
        """Hand the job to the prepared process (preparing one now if there is none, or it died)."""
        order = {k: v for k, v in msg.items() if k not in ("stdin", "files")}
        order |= {"cwd": cwd, "program": program}
        data = marshal.dumps(order)  # read by the same interpreter: lighter to decode than JSON
        for attempt in (1, 2):
            job = self.take_prepared()
            start = time.monotonic()
            try:
                _write_all(job.go, data)
                os.close(job.go)
                return job, start
            except BrokenPipeError:  # it died before its job: killed with the last job's leftovers
                self.discard(job)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def prepare_next(self) -> None:
        """Have the next job's process forked while the current job runs (see `prepare`)."""
        if self.zygote is not None:
            self.zygote.ask()
        elif self.ready is None:
            self.ready = self.prepare()

    def take_prepared(self) -> Prepared:
        if self.zygote is not None:
            return self.zygote.take()
        job = self.ready or self.prepare()
        self.ready = None
        return job

    def prepare(self) -> Prepared:
        """Fork the next job's process and take it as far as it can go before its request is known.

        One is prepared while each job runs, so a Python job's fork, session, OOM score, descriptors,
        seccomp filter and standard streams cost nothing at the time it runs. The prepared process
        stays root and out of the job uid's reach (its cleanup kills only that uid) until its request
        arrives on GO_FD. The zygote calls this; the server itself only in a container.
        """
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the job
            try:  # the server's ends of the pipes are closed by enter_job (all but fds 0-4 are)
                self.enter_job(stdin_r, out_w, err_w, st_w, go_r)
                order = marshal.loads(_read_all(GO_FD))
                os.close(GO_FD)
                self.start_job(order)
            except BaseException as e:
                message = f"setup: {type(e).__name__}: {e}".encode()[:4000]
                for fd in (STATUS_FD, st_w):  # fd 3 once dup2'ed, st_w before that
                    try:
                        os.write(fd, message)
                        break
                    except OSError:
                        pass
                os._exit(127)
        for fd in (stdin_r, out_w, err_w, st_w, go_r):
            os.close(fd)
        return Prepared(pid, os.pidfd_open(pid), go_w, stdin_w, out_r, err_r, st_r)

    def discard(self, job: Prepared) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(job.pidfd, signal.SIGKILL)
        if job.zygote:
            assert self.zygote is not None
            self.zygote.forget(job.pid)
        else:
            with contextlib.suppress(ChildProcessError):  # already reaped by a cleanup
                os.waitpid(job.pid, 0)
        for fd in (job.pidfd, job.go, job.stdin_w, job.out_r, job.err_r, job.st_r):
            with contextlib.suppress(OSError):
                os.close(fd)

    def spawn_job(self, msg: Msg, cwd: str, program: str, fds: tuple[int, int, int, int]) -> int:
        """posix_spawn the exec helper, which confines itself as enter_job and start_job do and execs
        `program`."""
        assert self.spawn is not None
        seccomp = bytes(self.seccomp_prog.filter).hex() if self.seccomp_prog else "-"
        args = [
            self.spawn,
            str(max(1, int(msg["cpu_s"] + 0.999))),
            str(msg["fsize_bytes"]),
            str(msg["nofile"]),
            str(msg["pids"] if self.uid is not None else 0),
            str(msg["memory_mb"] << 20 if msg.get("rlimit_as") else 0),
            str(-1 if self.uid is None else self.uid),
            "1000",  # oom_score_adj: the job, never the server, is what the OOM killer takes
            seccomp,
            cwd,
            "--",
            program,
            *msg["argv"][1:],
        ]
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        return os.posix_spawn(
            self.spawn, args, msg["env"], file_actions=actions, setsid=True, setsigdef=[signal.SIGPIPE]
        )

    def enter_job(self, stdin_r: int, out_w: int, err_w: int, st_w: int, go_r: int) -> None:
        """What every job needs, done in the prepared process before its request arrives."""
        os.setsid()
        # The job, never the server, is the OOM killer's pick.
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        os.write(fd, b"1000")
        os.close(fd)
        os.dup2(stdin_r, 0), os.dup2(out_w, 1), os.dup2(err_w, 2), os.dup2(st_w, STATUS_FD)
        os.dup2(go_r, GO_FD)
        for fd in (STATUS_FD, GO_FD):
            os.set_inheritable(fd, False)  # both close on exec: success says nothing
        os.closerange(GO_FD + 1, 65536)
        if not self.in_zygote:
            job_defaults(self.seccomp_prog)

    def start_job(self, order: Msg) -> None:
        """The request's own limits, the drop to the slot's uid, and the program."""
        cwd, program = order["cwd"], order["program"]
        os.chdir(cwd)
        cpu = max(1, int(order["cpu_s"] + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (order["fsize_bytes"], order["fsize_bytes"]))
        resource.setrlimit(resource.RLIMIT_NOFILE, (order["nofile"], order["nofile"]))
        if self.uid is not None:  # counted per uid host-wide: only meaningful for a uid of our own
            resource.setrlimit(resource.RLIMIT_NPROC, (order["pids"], order["pids"]))
        if order.get("rlimit_as"):
            limit = order["memory_mb"] << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)
        env = order["env"]
        if order.get("python"):
            fd = os.open(order["path"], os.O_RDONLY)
            source = _read_all(fd)  # bytes: compile() decodes them as `python3 file` would (PEP 263)
            os.close(fd)
            bytecode = order.get("bytecode")
            run_python(source, order["path"], cwd, env, binascii.a2b_base64(bytecode) if bytecode else None)
        assert program is not None
        os.execve(program, order["argv"], env)

    def supervise(self, job: Prepared, msg: Msg, start: float) -> Msg:
        """Feed stdin, read capped output, enforce the wall clock; the job ends when its process exits."""
        pid, pidfd, stdin_w = job.pid, job.pidfd, job.stdin_w
        out_r, err_r, st_r = job.out_r, job.err_r, job.st_r
        caps = {out_r: msg["output_bytes"], err_r: msg["output_bytes"], st_r: 8192}
        bufs = {out_r: bytearray(), err_r: bytearray(), st_r: bytearray()}
        truncated = {out_r: False, err_r: False, st_r: False}
        data = memoryview(msg["stdin"].encode("utf-8", "surrogateescape"))
        if data:
            os.set_blocking(stdin_w, False)
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                data = data[os.write(stdin_w, data[:READ_CHUNK]) :]
        if not data:
            os.close(stdin_w)
            stdin_w = -1
        self.prepare_next()  # the next job's process, forked while this one runs
        open_fds = {out_r, err_r, st_r}
        deadline = start + msg["wall_s"]
        # RLIMIT_CPU counts whole seconds; below that the job's CPU time is read when it could be spent.
        cpu_check = start + msg["cpu_s"]
        killed_for = None
        exited = False
        while not exited:
            now = time.monotonic()
            if now >= deadline:
                killed_for = "timeout"
                break
            if now >= cpu_check:
                spent = _cpu_seconds(pid)
                if spent >= msg["cpu_s"]:
                    killed_for = "timeout"
                    break
                cpu_check = now + max(msg["cpu_s"] - spent, 0.005)
            writers = [stdin_w] if stdin_w >= 0 else []
            r, w, _ = select.select([pidfd, *open_fds], writers, [], min(deadline, cpu_check) - now)
            if w:
                try:
                    data = data[os.write(stdin_w, data[:READ_CHUNK]) :]
                except OSError:  # the job closed its stdin
                    data = data[:0]
                if not data:
                    os.close(stdin_w)
                    stdin_w = -1
            exited = pidfd in r
            for fd in r:
                if fd == pidfd:
                    continue
                killed_for = self.read_into(fd, bufs, caps, truncated, open_fds) or killed_for
            if killed_for:
                break
        if exited:  # what the job wrote before exiting is still in the pipes
            for fd in list(open_fds):
                os.set_blocking(fd, False)
                while fd in open_fds:
                    try:
                        killed_for = self.read_into(fd, bufs, caps, truncated, open_fds) or killed_for
                    except BlockingIOError:
                        break
        if not exited:
            self.kill_job(pid)
        if job.zygote:
            assert self.zygote is not None
            status_code, cpu_s = self.zygote.wait(pid)
        else:
            _, status_code, rusage = os.wait4(pid, 0)
            cpu_s = rusage.ru_utime + rusage.ru_stime
        for fd in (out_r, err_r, st_r, pidfd, stdin_w):
            if fd >= 0:
                os.close(fd)
        setup = bytes(bufs[st_r]).decode("utf-8", "replace")
        status, exit_code = classify(status_code, killed_for, cpu_s, msg["cpu_s"], setup)
        result = {
            "status": status,
            "exit_code": exit_code,
            "stdout": _text(bufs[out_r]),
            "stderr": _text(bufs[err_r]),
            "stdout_truncated": truncated[out_r],
            "stderr_truncated": truncated[err_r],
            "time_s": round(time.monotonic() - start, 6),
            "cpu_s": round(cpu_s, 6),
        }
        if setup.startswith("setup:"):
            result["error"] = setup
        elif setup.startswith("compile:"):
            result["compile_error"] = setup[len("compile:") :]
        return result

    @staticmethod
    def read_into(
        fd: int,
        bufs: dict[int, bytearray],
        caps: dict[int, int],
        truncated: dict[int, bool],
        open_fds: set[int],
    ) -> str | None:
        """Read one chunk of a job's pipe; past the cap, keep the head and say `output_limit`."""
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            open_fds.discard(fd)
            return None
        buf = bufs[fd]
        room = caps[fd] - len(buf)
        if len(chunk) <= room:
            buf += chunk
            return None
        buf += chunk[: max(room, 0)]
        truncated[fd] = True
        open_fds.discard(fd)
        return "output_limit"

    def kill_job(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """Kill every process the job left behind: daemons, orphans, `nohup`, anything of its uid."""
        if self.container:  # kill(-1) spares the caller (pid 1 here): everything else is the job's
            for _ in range(3):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
            return
        if self.uid is None:
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setuid(self.uid)
                for _ in range(3):  # a fork bomb may fork between kill passes
                    os.kill(-1, signal.SIGKILL)
            except BaseException:
                pass
            os._exit(0)
        os.waitpid(pid, 0)

    def cleanup(self) -> None:
        """Kill what the last job left and wait until none of it is left."""
        _reap_children()
        if not self.leftover_pids():
            return
        self.kill_leftovers()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _reap_children()
            if not self.leftover_pids():
                return
            self.kill_leftovers()
            time.sleep(0.002)
        raise RuntimeError(f"processes of the job survived the cleanup: {self.leftover_pids()}")

    def leftover_pids(self) -> list[int]:
        """The job's processes still alive; never the server or the next job's prepared process."""
        ours = (
            os.getpid(),
            self.ready.pid if self.ready else 0,
            *(self.zygote.pids() if self.zygote else ()),
        )
        if self.container:
            return [
                int(p)
                for p in os.listdir("/proc")
                if p.isdigit() and int(p) not in (1, *ours) and not _zombie(p)
            ]
        if "pids" in self.cgroups:  # the server itself is in it too (read afresh: pread shows a stale list)
            with open(os.path.join(self.cgroups["pids"], "cgroup.procs")) as f:
                return [int(p) for p in f.read().split() if int(p) not in ours]
        if self.uid is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == self.uid:
                        found.append(int(entry))
                except FileNotFoundError:
                    pass
        return found

    # -- cgroups ----------------------------------------------------------------------------------
    def cg_read(self, directory: str, name: str, size: int = 4096) -> str:
        """Read a cgroup file through a descriptor kept open: several of these are read every job."""
        return os.pread(self._cg_fd(directory, name, os.O_RDONLY), size, 0).decode()

    def cg_write(self, directory: str, name: str, value: str) -> None:
        os.pwrite(self._cg_fd(directory, name, os.O_WRONLY), value.encode(), 0)

    def _cg_fd(self, directory: str, name: str, mode: int) -> int:
        key = (os.path.join(directory, name), mode)
        fd = self.cg_fds.get(key)
        if fd is None:
            fd = self.cg_fds[key] = os.open(key[0], mode | os.O_CLOEXEC)
        return fd

    def set_limit(self, directory: str, name: str, value: str) -> None:
        """Write a cgroup limit unless it already holds that value; a file the kernel lacks is skipped."""
        key = os.path.join(directory, name)
        if self.limits_set.get(key) == value:
            return
        try:
            _write(directory, name, value)
        except OSError:
            if name not in ("memory.memsw.limit_in_bytes", "memory.swap.max"):
                raise
        self.limits_set[key] = value

    def memory_reset(self, memory_mb: int, pids: int) -> int:
        if "pids" in self.cgroups:  # the job's, the server, the zygote, a cleanup helper, a prepared job
            self.set_limit(self.cgroups["pids"], "pids.max", str(pids + 4))
        if "memory" not in self.cgroups:
            return self.oom_kills() if self.memory_stats else 0
        d = self.cgroups["memory"]
        usage = "memory.usage_in_bytes" if self.cgroup_version == 1 else "memory.current"
        # The charge a job cannot take back: the server's, the prepared process's and tmpfs pages. Page
        # cache (toolchain files an earlier job read, a compiler's cache) is also charged here, but the
        # kernel reclaims it when a job needs room, so it must not widen the job's limit.
        self.held = int(self.cg_read(d, usage)) - page_cache(self.cg_read(d, "memory.stat", 1 << 16))
        # Rounded to 4 MB so that small changes in the server's own charge do not rewrite the limit.
        limit = str(((memory_mb << 20) + self.held + (4 << 20) - 1) // (4 << 20) * (4 << 20))
        if self.cgroup_version == 1:  # memsw >= limit at every moment: raise memsw first, lower it last
            old = int(self.limits_set.get(os.path.join(d, "memory.limit_in_bytes"), "0"))
            order = ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
            for name in order if int(limit) > old else order[::-1]:
                self.set_limit(d, name, limit)
            self.cg_write(d, "memory.max_usage_in_bytes", "0")
        else:
            self.set_limit(d, "memory.max", limit)
            self.set_limit(d, "memory.swap.max", "0")
            _write(d, "memory.peak", "0", ignore_errors=True)
        return self.oom_kills()

    def oom_kills(self) -> int:
        d = self.memory_stats or ""
        name = "memory.oom_control" if self.cgroup_version == 1 else "memory.events"
        for line in self.cg_read(d, name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        if self.cgroup_version == 1:  # kernels before 4.13 count limit hits only
            return int(self.cg_read(d, "memory.failcnt").split()[0])
        return 0

    def memory_report(self, oom_before: int) -> tuple[float, bool]:
        if "memory" not in self.cgroups:  # no per-job peak; OOM kills of the container still count
            return 0.0, bool(self.memory_stats) and self.oom_kills() > oom_before
        d = self.cgroups["memory"]
        name = "memory.max_usage_in_bytes" if self.cgroup_version == 1 else "memory.peak"
        try:  # the cache still charged at the end was charged at the peak too: not the job's
            cache = page_cache(self.cg_read(d, "memory.stat", 1 << 16))
            peak = max(0, int(self.cg_read(d, name)) - self.held - cache) / (1 << 20)
        except OSError:
            peak = 0.0
        return round(peak, 2), self.oom_kills() > oom_before

    # -- the loop -----------------------------------------------------------------------------------
    def serve(self) -> None:
        if self.listen:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.listen)
            listener.listen(1)
            conn, _ = listener.accept()
            listener.close()
            rfile: Any = conn.makefile("rwb", buffering=0)
            wfile: Any = rfile
        else:
            rfile = os.fdopen(0, "rb", buffering=0)
            wfile = os.fdopen(1, "wb", buffering=0)
        if not self.container:
            self.zygote = Zygote(self)
        magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex()  # for precompiled jobs
        _send(wfile, {"ready": True, "pid": os.getpid(), "python_magic": magic})
        self.prepare_next()
        while True:
            header = _read_exact(rfile, 4)
            if not header:
                if self.ready is not None:
                    self.discard(self.ready)
                return  # the zygote sees its socket close and exits; its prepared job sees EOF on GO_FD
            msg = json.loads(_read_exact(rfile, struct.unpack(">I", header)[0]))
            if msg["op"] == "run":
                for reply in self.run_program(msg):
                    _send(wfile, reply)
            else:
                _send(wfile, self.handle(msg))

    def run_program(self, msg: Msg) -> Iterator[Msg]:
        """One program, from one request: write its source, compile it, seal the build, run it on each
        input (each step when the request has it). Replies: the compile step's result, then one per
        input, each sent as soon as it ends; the last one says `last`. A failed compile or a refused
        step is the last reply; a request with no input ends with an `end` reply.
        """
        if "program" in msg:
            reply = self.handle({"op": "program", **msg["program"]})
            if not reply.get("ok"):
                yield {**reply, "step": "setup", "last": True}
                return
        stdins = msg["stdins"] if "exec" in msg else []
        if "compile" in msg:
            reply = self.handle(msg["compile"])
            failed = reply.get("status") != "ok" or "error" in reply or "compile_error" in reply
            yield {**reply, "step": "compile", "last": failed}
            if failed:
                return
        if msg.get("seal"):
            reply = self.handle({"op": "seal"})
            if not reply.get("ok"):
                yield {**reply, "step": "setup", "last": True}
                return
        for i, stdin in enumerate(stdins):
            yield {
                **self.handle({**msg["exec"], "stdin": stdin}),
                "step": "case",
                "last": i == len(stdins) - 1,
            }
        if not stdins:
            yield {"step": "end", "last": True}

    def handle(self, msg: Msg) -> Msg:
        try:
            return getattr(self, "op_" + msg["op"])(msg)  # type: ignore[no-any-return]
        except Exception as e:
            return {
                "status": "sandbox_error",
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc(),
            }

    def op_which(self, msg: Msg) -> Msg:
        """Where each command is on the job PATH, or None: which toolchains this image has."""
        return {"ok": True, "found": {c: shutil.which(c, path=msg["path"]) for c in msg["commands"]}}


class ZygoteDied(BaseException):
    """Not an Exception, so that no request handler turns it into a reply: the server exits, and the
    caller restarts the slot and retries its program, as for any dead server."""


class Zygote:
    """The process that forks Python jobs: a copy of the server made at start-up, that does nothing else.

    A fork shares every page between parent and child until one of them writes to it. When the server
    forked each job itself, every page its own work touched between two forks (reading the request,
    supervising, reporting) was copied once more: those faults were the largest cost of a Python job
    (about 15% of the CPU of an empty one). The zygote touches a few pages per fork. What every job
    would otherwise set up for itself and inherits unchanged (`job_defaults`: the seccomp filter,
    rlimits, signals, an empty environment, Python's standard streams) is set up here once: each
    costs a job a few dozen of those page copies. It reaps its jobs and reports each one's exit
    status and CPU time to the server.

    Not in a container: there the jobs share the server's uid and could kill it, while the server, as
    the container's pid 1, cannot be killed from inside.

    Messages on a SOCK_SEQPACKET pair. Server -> zygote: b"P", prepare a job. Zygote -> server:
    b"R" + pid with the job's pidfd and the server's ends of its pipes attached; b"E" + pid, wait
    status and CPU seconds when a job it forked has been reaped.
    """

    PIPE_FDS = 6  # pidfd, go, stdin_w, out_r, err_r, st_r

    def __init__(self, server: Server) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 0
            try:
                zygote_main(server, theirs)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        theirs.close()
        self.pid, self.sock = pid, ours
        self.asked = 0  # requests not answered yet
        self.prepared: list[Prepared] = []
        self.exits: dict[int, tuple[int, float]] = {}
        self.forgotten: set[int] = set()

    def ask(self) -> None:
        """Request the next job's process, unless one is prepared or on its way."""
        if not self.prepared and not self.asked:
            try:
                self.sock.send(b"P")
            except OSError as e:
                raise ZygoteDied(f"the zygote (pid {self.pid}) is gone: {e}") from None
            self.asked += 1

    def take(self) -> Prepared:
        self.ask()
        while not self.prepared:
            self.receive()
        return self.prepared.pop()

    def wait(self, pid: int) -> tuple[int, float]:
        """The wait status and CPU seconds of an exited job."""
        while pid not in self.exits:
            self.receive()
        return self.exits.pop(pid)

    def forget(self, pid: int) -> None:
        """A discarded job: its exit report is dropped when it comes."""
        if self.exits.pop(pid, None) is None:
            self.forgotten.add(pid)

    def pids(self) -> list[int]:
        """The zygote and the jobs it prepared that have not started: never a job's leftovers."""
        while self.asked:
            self.receive()
        return [self.pid, *(job.pid for job in self.prepared)]

    def receive(self) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(self.sock, 64, self.PIPE_FDS)
        except OSError as e:
            raise ZygoteDied(f"the zygote (pid {self.pid}) is gone: {e}") from None
        if not msg:
            raise ZygoteDied(f"the zygote (pid {self.pid}) exited")
        kind, pid = msg[:1], struct.unpack("=i", msg[1:5])[0]
        if kind == b"R":
            self.asked -= 1
            pidfd, go, stdin_w, out_r, err_r, st_r = fds
            self.prepared.append(Prepared(pid, pidfd, go, stdin_w, out_r, err_r, st_r, zygote=True))
        elif pid in self.forgotten:
            self.forgotten.discard(pid)
        else:
            status, cpu_s = struct.unpack("=id", msg[5:])
            self.exits[pid] = (status, cpu_s)


def zygote_main(server: Server, sock: socket.socket) -> None:
    """The zygote's loop: fork a prepared job on each request, reap and report each job that exits."""
    devnull = os.open(os.devnull, os.O_RDWR)  # the server's channel to the caller stays the server's
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    job_defaults(server.seccomp_prog)
    server.in_zygote = True
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        ready, _, _ = select.select([sock.fileno(), *children], [], [])
        for fd in ready:
            if fd not in children:
                continue
            pid = children.pop(fd)
            os.close(fd)
            _, status, rusage = os.wait4(pid, 0)
            sock.send(b"E" + struct.pack("=iid", pid, status, rusage.ru_utime + rusage.ru_stime))
        if sock.fileno() in ready:
            if not sock.recv(16):  # the server is gone; a prepared job sees EOF on GO_FD and exits
                return
            job = server.prepare()
            socket.send_fds(sock, [b"R" + struct.pack("=i", job.pid)], list(job[1:7]))
            for fd in job[2:7]:
                os.close(fd)
            children[job.pidfd] = job.pid


def job_defaults(seccomp: SeccompProgram | None) -> None:
    """What every job has, set where jobs are forked from (the zygote, once) or in each job."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own (a container's pid 1 drops it)
    os.environ.clear()  # a job's environment is its request's
    if seccomp is not None:  # nothing it denies is needed after it, setuid included
        seccomp.install()
    python_streams()


def python_streams() -> None:
    """sys.stdin, stdout and stderr on fds 0, 1 and 2, as a Python program started with them has."""
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", line_buffering=False
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    for name in ("stdin", "stdout", "stderr"):
        setattr(sys, f"__{name}__", getattr(sys, name))


def run_python(source: bytes, path: str, cwd: str, env: Msg, bytecode: bytes | None = None) -> None:
    """Compile and run `source` (or run its `bytecode`, compiled by the caller) as `__main__` in this
    (forked, confined) process, then exit."""
    try:
        code = marshal.loads(bytecode) if bytecode else compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes
        os.write(STATUS_FD, ("compile:" + "".join(traceback.format_exception_only(type(e), e))).encode())
        os._exit(1)
    os.close(STATUS_FD)
    for key, value in env.items():  # os.environ was emptied by job_defaults
        os.environ[key] = value
    sys.argv = [path]
    sys.path[:] = [cwd, *[p for p in sys.path if p]]
    main = type(sys)("__main__")
    main.__file__ = path
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    exit_code = 0
    try:
        exec(code, main.__dict__)
    except SystemExit as e:
        exit_code = _exit_code(e.code)
    except BaseException:
        traceback.print_exc()
        exit_code = 1
    exit_code = _python_shutdown(exit_code)
    os._exit(exit_code)


def _python_shutdown(exit_code: int) -> int:
    """What the interpreter does at exit: join threads, run atexit handlers, flush stdout."""
    threading = sys.modules.get("threading")
    try:
        if threading is not None and threading.active_count() > 1:  # joining costs ms: only when needed
            threading._shutdown()
        atexit._run_exitfuncs()
    except SystemExit as e:
        exit_code = _exit_code(e.code)
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            exit_code = exit_code or 120
    return exit_code


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(BaseException):
        print(code, file=sys.stderr)
    return 1


def classify(
    status_code: int, killed_for: str | None, cpu_s: float, cpu_limit: float, setup: str
) -> tuple[str, int | None]:
    exit_code = os.waitstatus_to_exitcode(status_code) if status_code is not None else None
    if setup.startswith("setup:"):
        return "sandbox_error", exit_code
    if setup.startswith("compile:"):
        return "compile_error", exit_code
    if killed_for:
        return killed_for, exit_code
    if exit_code is not None and exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit):
            return "timeout", exit_code
        if sig == signal.SIGXFSZ:
            return "output_limit", exit_code
        return "runtime_error", exit_code
    if cpu_s > cpu_limit:
        return "timeout", exit_code
    return ("ok" if exit_code == 0 else "runtime_error"), exit_code


# -- seccomp ------------------------------------------------------------------------------------------
def build_seccomp_filter() -> ctypes.Array[Any]:
    """A classic BPF program: x86_64 only; the denied syscalls and namespace-creating clones get EPERM."""
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, errno_eperm, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000
    enosys = 0x00050000 | 38
    insns: list[tuple[int, int, int, int]] = [
        (ld, 0, 0, 4),  # arch
        (jeq, 1, 0, 0xC000003E),  # AUDIT_ARCH_X86_64
        (ret, 0, 0, kill),
        (ld, 0, 0, 0),  # syscall number
        (0x35, 0, 1, 0x40000000),  # jge: the x32 ABI
        (ret, 0, 0, errno_eperm),
    ]
    for nr in sorted(DENIED_SYSCALLS.values()):
        insns += [(jeq, 0, 1, nr), (ret, 0, 0, errno_eperm)]
    insns += [(jeq, 0, 1, SYS_CLONE3), (ret, 0, 0, enosys)]  # glibc falls back to clone
    insns += [
        (jeq, 0, 3, SYS_CLONE),
        (ld, 0, 0, 16),  # clone flags (low 32 bits)
        (jset, 0, 1, CLONE_NAMESPACES),
        (ret, 0, 0, errno_eperm),
        (ret, 0, 0, allow),
    ]

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_ushort),
            ("jt", ctypes.c_ubyte),
            ("jf", ctypes.c_ubyte),
            ("k", ctypes.c_uint),
        ]

    return (SockFilter * len(insns))(*[SockFilter(*i) for i in insns])


class SeccompProgram:
    """The filter, built once in the server; `install()` in a forked job costs two prctl calls."""

    def __init__(self) -> None:
        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.filter = build_seccomp_filter()
        self.fprog = SockFprog(len(self.filter), ctypes.cast(self.filter, ctypes.c_void_p))

    def install(self) -> None:
        if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
        if LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self.fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(SECCOMP)")


# -- small helpers --------------------------------------------------------------------------------
def page_cache(memory_stat: str) -> int:
    """Bytes of reclaimable file cache in a memory cgroup's `memory.stat` (v1 and v2 name them alike)."""
    total = 0
    for line in memory_stat.splitlines():
        key, _, value = line.partition(" ")
        if key in ("active_file", "inactive_file"):
            total += int(value)
    return total


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _text(buf: bytes | bytearray) -> str:
    return bytes(buf).decode("utf-8", "replace")


def _write(directory: str, name: str, value: str, ignore_errors: bool = False) -> None:
    try:
        with open(os.path.join(directory, name), "w") as f:
            f.write(value)
    except OSError:
        if not ignore_errors:
            raise


def _empty_plain_dir(path: str, owner: int) -> bool:
    """Empty `path`, the root of a tmpfs no process uses any more, when all it holds is at most 64
    plain files or symlinks, and give it the owner, mode, times and (no) extended attributes of a new
    one. False for anything else (a directory, a fifo, more files, an error): then the caller mounts a
    new tmpfs."""
    try:
        with os.scandir(path) as it:
            entries = list(itertools.islice(it, 65))
        if len(entries) > 64 or not all(e.is_file(follow_symlinks=False) or e.is_symlink() for e in entries):
            return False
        for entry in entries:
            os.unlink(entry.path)
        for name in os.listxattr(path):
            os.removexattr(path, name)
        os.chown(path, owner, owner)
        os.chmod(path, 0o755)
        os.utime(path, (0, 0))
    except OSError:
        return False
    return True


def remove_tree_contents(path: str) -> None:
    for entry in os.listdir(path):
        p = os.path.join(path, entry)
        if os.path.isdir(p) and not os.path.islink(p):
            for dirpath, dirnames, _ in os.walk(p):  # a job may have removed its own write bits
                for d in dirnames:
                    os.chmod(os.path.join(dirpath, d), 0o700)
            os.chmod(p, 0o700)
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)


def _read_exact(f: io.RawIOBase, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def _send(f: io.RawIOBase, obj: Msg) -> None:
    data = json.dumps(obj).encode()
    f.write(struct.pack(">I", len(data)) + data)


def preload(modules: dict[str, str]) -> None:
    """The caller's own modules (a test harness, say), run once here so that jobs import them loaded."""
    for name, source in modules.items():
        module = type(sys)(name)
        module.__file__ = f"<preload {name}>"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec", dont_inherit=True), module.__dict__)


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    server = Server(config)
    preload(config.get("preload", {}))
    # Move everything imported so far out of the collector's sight: a forked job's collections then never
    # touch (and so never copy) the server's pages.
    gc.collect()
    gc.freeze()
    if server.container:  # as pid 1, a signal without a handler never reaches us: drop Python's SIGINT one
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    server.serve()
