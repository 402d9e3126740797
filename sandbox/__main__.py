"""The sandbox's command line (DESIGN.md section 3.3).

python -m sandbox run FILE --language LANG [--stdin FILE] [--time-limit S] [--memory-mb N] [--backend local|docker]
python -m sandbox languages     each language with the toolchain version found, or what to install
python -m sandbox doctor        which isolation primitives are active on this machine
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sandbox.isolation import probe
from sandbox.languages import LANGUAGES, missing_toolchain, toolchain_version
from sandbox.types import Limits, RunRequest, SandboxError, Status


def cmd_run(args: argparse.Namespace) -> int:
    try:
        code = Path(args.file).read_text(encoding="utf-8", errors="surrogateescape")
        stdin = Path(args.stdin).read_text(encoding="utf-8", errors="surrogateescape") if args.stdin else ""
    except OSError as e:
        print(f"error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        limits = Limits(time_limit_s=args.time_limit, memory_mb=args.memory_mb)
    except ValueError as e:  # --time-limit or --memory-mb out of range
        print(f"error: {e}", file=sys.stderr)
        return 2
    request = RunRequest(language=args.language, code=code, stdin=stdin, limits=limits)
    try:
        if args.backend == "docker":
            from sandbox.docker import DockerSandbox

            with DockerSandbox(workers=1) as docker_sandbox:
                result = docker_sandbox.run(request)
        else:
            from sandbox.local import LocalSandbox

            with LocalSandbox(workers=1) as local_sandbox:
                result = local_sandbox.run(request)
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()))
    return 0 if result.status is not Status.SANDBOX_ERROR else 2


def cmd_languages(args: argparse.Namespace) -> int:
    width = max(map(len, LANGUAGES))
    missing = 0
    for name, lang in LANGUAGES.items():
        version = toolchain_version(lang)
        if version is None:
            missing += 1
            print(f"{name:<{width}}  MISSING `{missing_toolchain(lang)}`: apt-get install {lang.apt}")
        else:
            print(f"{name:<{width}}  {version}")
    return 1 if missing else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    isolation = probe()
    print("isolation primitives ([x] active):")
    print(isolation.report())
    print("complete" if isolation.complete else "INCOMPLETE: see the unchecked lines")
    return 0 if isolation.complete else 1


def cmd_engine(args: argparse.Namespace) -> int:
    from sandbox import engine

    if args.action == "start":
        started = engine.start_engine()
        print(f"{'started' if started else 'already running'}: {engine.engine_url()}")
    elif args.action == "stop":
        engine.stop_engine()
        print("stopped")
    else:
        running = engine.engine_running()
        print(f"{'running' if running else 'not running'}: {engine.engine_url()}")
        return 0 if running else 1
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from sandbox import engine

    print(f"building {engine.IMAGE} with {', '.join(engine.IMAGE_PACKAGES)} (a few minutes)" if args.force
          or not engine.image_exists() else f"{engine.IMAGE} exists")  # fmt: skip
    print(engine.build_image(force=args.force))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Run untrusted programs in isolation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one program and print a JSON RunResult")
    run.add_argument("file")
    run.add_argument("--language", required=True, choices=sorted(LANGUAGES))
    run.add_argument("--stdin")
    run.add_argument("--time-limit", type=float, default=Limits.time_limit_s)
    run.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    run.add_argument("--backend", choices=["local", "docker"], default="local")
    run.set_defaults(func=cmd_run)
    sub.add_parser("languages", help="toolchains found, or what to install").set_defaults(func=cmd_languages)
    sub.add_parser("doctor", help="which isolation primitives are active").set_defaults(func=cmd_doctor)
    eng = sub.add_parser("engine", help="start, stop or check the private Docker engine")
    eng.add_argument("action", choices=["start", "stop", "status"])
    eng.set_defaults(func=cmd_engine)
    image = sub.add_parser("image", help="build the Docker backend's image (mmdebstrap, no registry)")
    image.add_argument("--force", action="store_true", help="rebuild even if it exists")
    image.set_defaults(func=cmd_image)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
