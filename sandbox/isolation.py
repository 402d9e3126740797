"""Which isolation primitives this machine offers, and the per-slot resources built from them.

`probe()` checks each primitive for real (not by version numbers); `python -m sandbox doctor`
prints the result, and `LocalSandbox` logs one loud warning listing whatever is missing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("sandbox")

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Primitive:
    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class Isolation:
    bwrap: str | None  # path to bubblewrap: namespaces (net, pid, ipc, uts, mount) and a private root
    root: bool  # running as root: per-slot uids, tmpfs scratch mounts
    cgroup_version: int | None  # 1 or 2 when memory and pids cgroups can be created here
    cgroup_parents: dict[str, Path] = field(default_factory=dict)  # controller -> writable parent
    seccomp: bool = False

    def primitives(self) -> list[Primitive]:
        cg = ", ".join(f"{k}: {v}" for k, v in self.cgroup_parents.items())
        return [
            Primitive("namespaces", self.bwrap is not None and self.root,
                      f"bubblewrap {self.bwrap}: no network, own pid/ipc/uts, private read-only root"
                      if self.bwrap else "bubblewrap not found: `apt-get install bubblewrap`"),
            Primitive("non-root uid", self.root, "a uid per slot; RLIMIT_NPROC applies" if self.root
                      else "not root: jobs run as the caller's uid and can touch its files"),
            Primitive("scratch tmpfs", self.bwrap is not None and self.root,
                      "a fresh size-limited tmpfs per job" if self.root else "a plain directory, wiped after each job"),
            Primitive("memory cgroup", "memory" in self.cgroup_parents,
                      f"cgroup v{self.cgroup_version} ({cg})" if self.cgroup_parents
                      else "no writable memory cgroup: memory is limited by RLIMIT_AS where the language allows"),
            Primitive("pids cgroup", "pids" in self.cgroup_parents,
                      "caps processes and threads of a job" if "pids" in self.cgroup_parents
                      else "no writable pids cgroup: RLIMIT_NPROC only"),
            Primitive("seccomp", self.seccomp, "denies ptrace, mount, unshare, bpf, kexec, ... with EPERM"
                      if self.seccomp else "seccomp filters are not available in this kernel"),
            Primitive("rlimits", True, "CPU time, file size, open files, core dumps"),
            Primitive("output cap", True, "stdout and stderr are capped by the reader"),
        ]  # fmt: skip

    @property
    def complete(self) -> bool:
        return all(p.active for p in self.primitives())

    def report(self) -> str:
        return "\n".join(f"  [{'x' if p.active else ' '}] {p.name:<14} {p.detail}" for p in self.primitives())


def probe() -> Isolation:
    root = os.geteuid() == 0
    bwrap = shutil.which("bwrap")
    if bwrap is not None and not _bwrap_works(bwrap):
        log.warning("bubblewrap at %s cannot create namespaces here", bwrap)
        bwrap = None
    version, parents = _cgroups() if root else (None, {})
    return Isolation(
        bwrap=bwrap, root=root, cgroup_version=version, cgroup_parents=parents, seccomp=_seccomp()
    )


def _bwrap_works(bwrap: str) -> bool:
    argv = [bwrap, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--unshare-net", "--unshare-pid", "--die-with-parent", "/usr/bin/true"]  # fmt: skip
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _own_cgroup_paths() -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup ('' for v2)."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _cgroups() -> tuple[int | None, dict[str, Path]]:
    own = _own_cgroup_paths()
    v1 = {c: CGROUP_ROOT / c / own[c].lstrip("/") for c in ("memory", "pids") if c in own}
    parents: dict[str, Path] = {c: p for c, p in v1.items() if p.is_dir() and os.access(p, os.W_OK)}
    if parents:
        return 1, parents
    if "" in own and (CGROUP_ROOT / "cgroup.controllers").is_file():
        base = CGROUP_ROOT / own[""].lstrip("/")
        controllers = (base / "cgroup.subtree_control").read_text().split() if base.is_dir() else []
        if os.access(base, os.W_OK):
            return 2, {c: base for c in ("memory", "pids") if c in controllers}
    return None, {}


def _seccomp() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    return any(line.startswith("Seccomp:") for line in status.splitlines())


class SlotCgroups:
    """A cgroup per controller for one slot, made under our own cgroup and removed by `close()`."""

    def __init__(self, isolation: Isolation, name: str) -> None:
        self.dirs: dict[str, Path] = {}
        for controller, parent in isolation.cgroup_parents.items():
            path = parent / name  # on v2 memory and pids share one directory
            if path not in self.dirs.values():
                try:
                    path.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    log.warning("cannot create cgroup %s: %s", path, e)
                    continue
            self.dirs[controller] = path

    def close(self, timeout_s: float = 5.0) -> None:
        """Kill whatever is still in the slot's cgroups, then remove them. The kernel refuses (EBUSY) while
        a killed task is being torn down, so removal is retried for up to `timeout_s`."""
        for path in set(self.dirs.values()):
            deadline = time.monotonic() + timeout_s
            while True:
                _kill_members(path)
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cgroup %s not removed: %s", path, e)
                        break
                    time.sleep(0.02)
            with contextlib.suppress(OSError):  # the sandbox's folder, once its last slot is gone
                path.parent.rmdir()


def sweep_leftovers(isolation: Isolation, state_root: Path) -> list[Path]:
    """Remove what sandboxes of processes that no longer exist left behind (a process killed with
    SIGKILL runs no cleanup): their slots' cgroups, when empty, and their state folders. Both are named
    after the creating process's pid (`grpo-sandbox-<pid>-...`); anything of a live pid, or a cgroup
    with a process in it, is left alone. Returns what was removed."""
    removed = []
    for parent in set(isolation.cgroup_parents.values()):
        for folder in _orphans(parent):
            for slot in [p for p in folder.iterdir() if p.is_dir()]:
                if _empty_cgroup(slot):
                    with contextlib.suppress(OSError):
                        slot.rmdir()
                        removed.append(slot)
            with contextlib.suppress(OSError):  # only once no slot is left in it
                folder.rmdir()
                removed.append(folder)
    for folder in _orphans(state_root):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _orphans(parent: Path) -> list[Path]:
    """`grpo-sandbox-<pid>-*` folders under `parent` whose pid is not a live process."""
    found = []
    with contextlib.suppress(OSError):
        for path in parent.glob("grpo-sandbox-*-*"):
            pid = path.name.split("-")[2]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                found.append(path)
    return found


def _empty_cgroup(path: Path) -> bool:
    try:
        return not (path / "cgroup.procs").read_text().split()
    except OSError:
        return False


def _kill_members(cgroup: Path) -> None:
    try:
        pids = (cgroup / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
