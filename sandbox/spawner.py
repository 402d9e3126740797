"""The exec helper (`spawn.c`), built once per version of its source with the machine's gcc.

Jobs of every language but Python start through it: the fork server posix_spawns it (no copy of the
server's page tables) and it confines itself before exec, which costs less than forking the Python
server. Where gcc (or a static libc) is missing, `helper_path()` returns None and the server forks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger("sandbox")

SOURCE = Path(__file__).with_name("spawn.c")


def cache_dir() -> Path:
    base = os.environ.get("GRPO_CODER_CACHE", str(Path.home() / ".cache" / "grpo-coder"))
    return Path(base) / "sandbox"


def helper_path() -> Path | None:
    """The built helper (static, so it runs in any container), building it on first use."""
    source = SOURCE.read_bytes()
    out = cache_dir() / f"spawn-{hashlib.sha256(source).hexdigest()[:12]}"
    if out.is_file():
        return out
    gcc = shutil.which("gcc")
    if gcc is None:
        log.warning("gcc not found: sandbox jobs start by forking the server (slower); `apt-get install gcc`")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        binary = Path(tmp) / "spawn"
        proc = subprocess.run(
            [gcc, "-O2", "-static", "-o", str(binary), str(SOURCE)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            log.warning(
                "building the sandbox's exec helper failed, jobs will fork instead:\n%s", proc.stderr[-2000:]
            )
            return None
        binary.chmod(0o755)
        os.replace(binary, out)
    return out
