"""Shared fixtures: the sample library (rendered once per session), the default detector, media factories."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clockwork.samples import load_manifest, write_samples

REPO = Path(__file__).resolve().parent.parent


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    if os.environ.get("CLOCKWORK_FAIL_WITHOUT_CUDA") == "1":
        return  # the GPU run: needs_cuda tests run and fail loudly instead of skipping
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (set CLOCKWORK_FAIL_WITHOUT_CUDA=1 to fail instead)")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    """The sample library, rendered by ffmpeg once per test session."""
    out = tmp_path_factory.mktemp("samples")
    write_samples(out)
    return out


@pytest.fixture(scope="session")
def manifest(samples_dir) -> dict:
    return load_manifest(samples_dir)


@pytest.fixture(scope="session")
def detector():
    from clockwork.detector import Detector

    return Detector(device="cpu")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg for a test fixture; the command is visible in the test that calls it."""
    subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name, *ffmpeg_args)`` renders ``tmp_path/name`` and returns its path."""

    def make(name: str, *args: str) -> Path:
        out = tmp_path / name
        ffmpeg(*args, str(out))
        return out

    return make
