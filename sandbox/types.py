"""The sandbox's request and result types (DESIGN.md section 3.4)."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    OK = "ok"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"  # the sandbox itself failed: never a verdict on the program


@dataclass(frozen=True)
class Limits:
    """Per-run limits. `time_limit_s` is CPU time; the wall clock gets `wall_time_limit_s`."""

    time_limit_s: float = 2.0
    memory_mb: int = 256
    output_mb: float = 16.0  # per stream, enforced by the reader
    compile_time_limit_s: float = 30.0
    compile_memory_mb: int = 2048
    wall_time_limit_s: float | None = None  # default: 2 * time_limit_s + 1
    max_processes: int = 64  # processes and threads of one run
    max_open_files: int = 256
    scratch_mb: int = 64  # the writable scratch directory, files included

    def __post_init__(self) -> None:
        for name in ("time_limit_s", "memory_mb", "output_mb", "compile_time_limit_s", "max_processes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Limits.{name} must be a finite number > 0, got {value}")

    @property
    def wall_s(self) -> float:
        return self.wall_time_limit_s or 2 * self.time_limit_s + 1.0


@dataclass(frozen=True)
class RunRequest:
    language: str
    code: str
    stdin: str = ""
    limits: Limits = field(default_factory=Limits)
    files: dict[str, str] = field(default_factory=dict)  # extra files in the scratch directory


@dataclass
class RunResult:
    status: Status
    exit_code: int | None = None  # negative: killed by that signal
    stdout: str = ""
    stderr: str = ""
    time_s: float = 0.0  # wall clock
    memory_mb: float = 0.0  # peak, where a memory cgroup measures it
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    compile: RunResult | None = None  # the compile step's own result, for compiled languages

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        if self.compile is not None:
            d["compile"] = self.compile.to_dict()
        return d


class SandboxError(RuntimeError):
    """The sandbox could not run a request (not a verdict on the program)."""


class ToolchainMissing(SandboxError):
    """A language's compiler or runtime is not installed; the message names the apt package."""
