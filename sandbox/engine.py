"""A Docker engine and the sandbox image, for machines where neither exists yet.

`start_engine()` starts Debian's `dockerd` on a private socket when no engine answers (no iptables,
no bridge: sandbox containers have no network anyway) and `stop_engine()` stops what it started.
`build_image()` builds the sandbox image with no registry: `mmdebstrap` makes a Debian root with the
languages' toolchains and `docker import` turns it into an image (DESIGN.md section 4).

    python -m sandbox engine start|stop|status
    python -m sandbox image [--force]        (what `make sandbox-image` runs)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from sandbox.languages import LANGUAGES
from sandbox.types import SandboxError

IMAGE = "grpo-coder-sandbox:latest"
ENGINE_DIR = Path(os.environ.get("GRPO_CODER_DOCKER_DIR", "/var/lib/grpo-coder/docker"))
PRIVATE_SOCKET = ENGINE_DIR / "docker.sock"
SUITE = "bookworm"
# Every language's toolchain, plus what compilers link against.
IMAGE_PACKAGES = sorted({lang.apt for lang in LANGUAGES.values()} | {"libc6-dev", "python3"})


def engine_url() -> str:
    """DOCKER_HOST if set, else the private engine's socket if it exists, else Docker's default."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if PRIVATE_SOCKET.exists():
        return f"unix://{PRIVATE_SOCKET}"
    return "unix:///var/run/docker.sock"


def client(url: str | None = None, timeout: int = 120) -> Any:
    """A docker SDK client for a running engine, or a `SandboxError` that says how to get one."""
    import docker

    url = url or engine_url()
    try:
        c = docker.DockerClient(base_url=url, timeout=timeout)
        c.ping()
    except Exception as e:
        raise SandboxError(
            f"no Docker engine answers at {url} ({type(e).__name__}): start one with `make docker-engine` "
            "(or `python -m sandbox engine start`), or use the local backend"
        ) from None
    return c


def engine_running(url: str | None = None) -> bool:
    try:
        client(url, timeout=5)
    except SandboxError:
        return False
    return True


def start_engine(timeout_s: float = 60) -> bool:
    """Start dockerd on the private socket unless an engine answers already; True if this started it."""
    if engine_running():
        return False
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise SandboxError("dockerd is not installed: `apt-get install docker.io` (or `make system-deps`)")
    ENGINE_DIR.mkdir(parents=True, exist_ok=True)
    pidfile = ENGINE_DIR / "dockerd.pid"
    pidfile.unlink(missing_ok=True)  # a stale pid file stops dockerd from starting
    PRIVATE_SOCKET.unlink(missing_ok=True)
    argv = [dockerd, "-H", f"unix://{PRIVATE_SOCKET}", "--data-root", str(ENGINE_DIR / "data"),
            "--exec-root", str(ENGINE_DIR / "exec"), "--pidfile", str(pidfile), "--iptables=false",
            "--ip6tables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=overlay2"]  # fmt: skip
    with open(ENGINE_DIR / "dockerd.log", "ab") as log:
        subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if PRIVATE_SOCKET.exists() and engine_running(f"unix://{PRIVATE_SOCKET}"):
            return True
        time.sleep(0.5)
    tail = (ENGINE_DIR / "dockerd.log").read_text(errors="replace")[-1500:]
    raise SandboxError(f"dockerd did not answer within {timeout_s:.0f} s; its log ends:\n{tail}")


def stop_engine(timeout_s: float = 30) -> None:
    """Stop the private dockerd (if this module's pid file names one)."""
    pidfile = ENGINE_DIR / "dockerd.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def image_exists(tag: str = IMAGE) -> bool:
    import docker

    try:
        client().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(tag: str = IMAGE, *, force: bool = False) -> str:
    """mmdebstrap a Debian root with every language's toolchain and import it as `tag`."""
    if not force and image_exists(tag):
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise SandboxError(
            "mmdebstrap is not installed: `apt-get install mmdebstrap` (or `make system-deps`)"
        )
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    argv = [mmdebstrap, "--variant=essential", f"--include={','.join(IMAGE_PACKAGES)}", SUITE, "-"]
    if sources.exists():
        argv.append(str(sources))
    c = client(timeout=1800)
    repository, _, version = tag.partition(":")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            c.api.import_image_from_stream(proc.stdout, repository=repository, tag=version or "latest")
        finally:
            _, err = proc.communicate()
        if proc.returncode != 0:
            raise SandboxError(
                f"mmdebstrap failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}"
            )
    return tag
