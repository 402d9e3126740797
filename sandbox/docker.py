"""`DockerSandbox`: the same fork server, run in warm containers instead of bubblewrap.

Each slot is a long-lived container of the sandbox image (`make sandbox-image`) running
`_server.py`; the host speaks to it over a unix socket in a bind-mounted folder. A container per run
costs 430-620 ms here; a job in a warm container costs a fork (DESIGN.md section 4).

Each container: no network, a read-only root, tmpfs scratch mounted `exec`, memory, pids and CPU
limits, `cap_drop=ALL`, no-new-privileges, a non-root user (65534), no /dev/shm, and the server's
own seccomp filter on every job. The server is the container's pid 1, so a job (same uid) cannot
kill it: the kernel drops signals to a namespace's init that it has no handler for. Between jobs
the server kills every other process and empties the scratch. A container that dies is replaced and its program retried once.

Compared with `LocalSandbox`: memory is limited per container, not per job (the container's limit
follows the job's `memory_mb`, updated when it changes), and `memory_mb` in results is not measured.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox.engine import IMAGE, client
from sandbox.languages import LANGUAGES, SANDBOX_PATH, Language, toolchain_commands
from sandbox.pool import INSIDE, Channel, Message, ProgramResult, SlotPool
from sandbox.spawner import helper_path
from sandbox.types import Limits, RunRequest, RunResult, SandboxError, ToolchainMissing

log = logging.getLogger("sandbox")

SERVER = Path(__file__).with_name("_server.py")
USER = "65534:65534"
SERVER_MEMORY_MB = 48  # the server's own share of a container's memory limit


class DockerSlot:
    def __init__(
        self,
        docker: Any,
        slot: int,
        image: str,
        state_dir: Path,
        helper: Path | None,
        *,
        cpus: float,
        pids: int,
        preload: dict[str, str] | None = None,
    ) -> None:
        self.helper = helper
        self.preload = preload or {}
        self.docker, self.slot, self.image, self.cpus, self.pids = docker, slot, image, cpus, pids
        self.ctl = state_dir / f"ctl{slot}"
        self.ctl.mkdir(mode=0o777, exist_ok=True)
        os.chmod(self.ctl, 0o777)  # the container's user creates its socket here
        self.server = state_dir / "server.py"
        self.container: Any = None
        self.sock: socket.socket | None = None
        self.channel: Channel | None = None
        self.python_magic: str | None = None  # the server's Python bytecode version, from its hello
        self.memory_mb = 0
        self.start()

    def start(self, memory_mb: int = 512) -> None:
        config = {
            "uid": None,
            "root": INSIDE,
            "container": True,
            "listen": f"{INSIDE}/ctl/server.sock",
            "memory_stats": "/sys/fs/cgroup/memory",
            "cgroup_version": 1 if Path("/sys/fs/cgroup/memory").is_dir() else 2,
            "seccomp": True,
            "spawn": None if self.helper is None else f"{INSIDE}/spawn",
            "preload": self.preload,
        }
        if config["cgroup_version"] == 2:
            config["memory_stats"] = "/sys/fs/cgroup"
        (self.ctl / "server.sock").unlink(missing_ok=True)
        self.memory_mb = memory_mb
        self.container = self.docker.containers.run(
            self.image,
            ["python3", "-I", "-S", f"{INSIDE}/server.py", json.dumps(config)],
            detach=True,
            init=False,  # the server is pid 1: the kernel drops signals a job sends it
            ipc_mode="none",  # no /dev/shm
            user=USER,
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=f"{memory_mb + SERVER_MEMORY_MB}m",
            memswap_limit=f"{memory_mb + SERVER_MEMORY_MB}m",
            pids_limit=self.pids,
            nano_cpus=int(self.cpus * 1e9),
            environment={"PATH": SANDBOX_PATH},
            working_dir=INSIDE,
            tmpfs={
                f"{INSIDE}/build": "rw,exec,nosuid,nodev,size=512m,mode=1777",
                f"{INSIDE}/work": "rw,exec,nosuid,nodev,size=256m,mode=1777",
                f"{INSIDE}/cache": "rw,exec,nosuid,nodev,size=512m,mode=1777",
                "/tmp": "ro,nosuid,nodev,size=1m",
            },
            volumes={
                str(self.ctl): {"bind": f"{INSIDE}/ctl", "mode": "rw"},
                str(self.server): {"bind": f"{INSIDE}/server.py", "mode": "ro"},
                **({str(self.helper): {"bind": f"{INSIDE}/spawn", "mode": "ro"}} if self.helper else {}),
            },
            labels={"grpo-coder.sandbox": str(os.getpid())},
        )
        self.sock = self._connect(self.ctl / "server.sock", timeout=60)
        self.channel = Channel(
            self.sock.fileno(), self.sock.fileno(), f"sandbox container {self.slot}", self.logs
        )
        hello = self.channel.receive(timeout=30)
        self.python_magic = hello.get("python_magic")
        if not hello.get("ready"):
            raise SandboxError(f"sandbox container {self.slot} did not start: {hello}")

    def _connect(self, path: Path, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                    return s
                except OSError:
                    s.close()
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise SandboxError(f"sandbox container {self.slot} exited at start: {self.logs()}")
            time.sleep(0.05)
        raise SandboxError(
            f"sandbox container {self.slot} did not open its socket in {timeout:.0f} s: {self.logs()}"
        )

    def logs(self) -> str:
        try:
            return self.container.logs(tail=30).decode(errors="replace").strip() or "(no output)"
        except Exception as e:
            return f"(no logs: {e})"

    depth = 1  # the container's memory limit is set before each step: nothing may run then

    def split(self, request: Message) -> list[Message]:
        """Compiling and running are sent apart: each under its own memory limit."""
        if "compile" not in request:
            return [request]
        compile_step = {k: request[k] for k in ("op", "program", "compile")} | {"stdins": []}
        return [compile_step, {k: v for k, v in request.items() if k not in ("program", "compile")}]

    def before_send(self, request: Message) -> None:
        """The container's memory limit follows the step's (memory is per container here)."""
        memory_mb = request["compile" if "compile" in request else "exec"]["memory_mb"]
        if memory_mb != self.memory_mb:
            limit = f"{memory_mb + SERVER_MEMORY_MB}m"
            self.container.update(mem_limit=limit, memswap_limit=limit)
            self.memory_mb = memory_mb

    def which(self, commands: list[str]) -> dict[str, str | None]:
        assert self.channel is not None
        return self.channel.call({"op": "which", "commands": commands, "path": SANDBOX_PATH}, 30)["found"]  # type: ignore[no-any-return]

    def kill(self) -> None:
        self.channel = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)
            self.container = None

    def restart(self) -> None:
        self.kill()
        self.start(self.memory_mb or 512)

    def close(self) -> None:
        self.kill()


class DockerSandbox:
    """Runs programs in `workers` warm containers of `image`; thread-safe, results in request order.

    Args:
        workers: number of containers, by default one per core.
        image: the sandbox image (`make sandbox-image` builds `grpo-coder-sandbox:latest`).
        base_url: the Docker engine; by default DOCKER_HOST, the private engine, or Docker's socket.
        cpus: CPU share of each container.
        preload: Python modules (name -> source) loaded once in each container's server; see
            `LocalSandbox`.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        image: str = IMAGE,
        base_url: str | None = None,
        cpus: float = 1.0,
        pids: int = 128,
        preload: dict[str, str] | None = None,
    ) -> None:
        import docker

        self.docker = client(base_url)
        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxError(f"image {image!r} not found: build it with `make sandbox-image`") from None
        self._state = Path(tempfile.mkdtemp(prefix="grpo-docker-sandbox-"))
        os.chmod(self._state, 0o755)
        shutil.copy(SERVER, self._state / "server.py")
        os.chmod(self._state / "server.py", 0o644)
        n = workers or os.cpu_count() or 1
        self.num_workers = n
        self.preload = dict(preload or {})
        helper = helper_path()  # static: runs in the image whatever its libc
        if helper is not None:
            shutil.copy(helper, self._state / "spawn")
            helper = self._state / "spawn"
        self._slots: list[DockerSlot] = []
        try:
            for i in range(n):
                self._slots.append(
                    DockerSlot(
                        self.docker, i, image, self._state, helper, cpus=cpus, pids=pids, preload=preload
                    )
                )
        except BaseException:
            self.close_slots()
            raise
        self._found = self._slots[0].which(
            sorted({c for lang in LANGUAGES.values() for c in toolchain_commands(lang)})
        )
        self._pool = SlotPool(
            self._slots, self.require_toolchain, cap_memory=False, python_magic=self._slots[0].python_magic
        )

    def require_toolchain(self, lang: Language) -> None:
        for cmd in toolchain_commands(lang):
            if self._found.get(cmd) is None:
                raise ToolchainMissing(
                    f"language {lang.name!r} needs `{cmd}`, which the sandbox image lacks: add the Debian package "
                    f"{lang.apt} to IMAGE_PACKAGES and rebuild (`make sandbox-image FORCE=1`)"
                )

    def run(self, request: RunRequest) -> RunResult:
        return self._pool.run(request)

    def run_many(self, requests: Sequence[RunRequest]) -> list[RunResult]:
        return self._pool.run_many(requests)

    def run_cases(
        self,
        language: str,
        code: str,
        inputs: Sequence[str],
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
    ) -> ProgramResult:
        return self._pool.run_cases(language, code, inputs, limits, files)

    def close_slots(self) -> None:
        for s in self._slots:
            s.close()

    def close(self) -> None:
        if hasattr(self, "_pool"):
            self._pool.close()
        else:
            self.close_slots()
        shutil.rmtree(self._state, ignore_errors=True)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
