"""Sandbox: running untrusted programs in isolation, in many languages.

Imports only the standard library, and the Docker SDK inside its Docker backend (DESIGN.md section 2).
`LocalSandbox`'s module docstring says what is contained and what is not.
"""

from sandbox.languages import LANGUAGES, Language, get_language
from sandbox.local import LocalSandbox
from sandbox.pool import ProgramResult
from sandbox.types import Limits, RunRequest, RunResult, SandboxError, Status, ToolchainMissing

__all__ = [
    "LANGUAGES",
    "Language",
    "Limits",
    "LocalSandbox",
    "ProgramResult",
    "RunRequest",
    "RunResult",
    "SandboxError",
    "Status",
    "ToolchainMissing",
    "get_language",
]
