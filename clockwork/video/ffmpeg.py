"""The ffmpeg/ffprobe wrapper: find the binaries, run them, and turn failures into FFmpegError."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clockwork import settings
from clockwork._logging import logger
from clockwork.errors import FFmpegError

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install ffmpeg) or set CLOCKWORK_FFMPEG to its path"


def ffmpeg_bin() -> str:
    return _find("ffmpeg", settings.ffmpeg_name())


def ffprobe_bin() -> str:
    return _find("ffprobe", settings.ffprobe_name())


def _find(what: str, name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FFmpegError(f"{what} not found (looked for {name!r} on PATH); {INSTALL_HINT}")
    return found


def run(
    args: list[str],
    *,
    timeout: float | None = None,
    what: str = "ffmpeg",
    on_progress: Callable[[float], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``ffmpeg ARGS`` quietly; raise :class:`FFmpegError` with its stderr tail on failure.
    ``on_progress(seconds)``: called with the output time ffmpeg has written so far (its ``-progress`` report)."""
    cmd = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    logger.debug("running %s", " ".join(cmd))
    if on_progress is not None:
        return _run_reporting(cmd, on_progress, what=what)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{what} timed out after {timeout} s", cmd=cmd, stderr=str(exc.stderr or "")) from None
    if proc.returncode != 0:
        raise FFmpegError(f"{what} failed with exit code {proc.returncode}", cmd=cmd, stderr=proc.stderr)
    return proc


def _run_reporting(
    cmd: list[str], on_progress: Callable[[float], None], *, what: str
) -> subprocess.CompletedProcess[str]:
    """``cmd`` with ``-progress pipe:1``: its ``out_time_us=`` lines are read as they come (stderr goes to a file,
    so neither pipe can fill and stall ffmpeg)."""
    cmd = [*cmd[:-1], "-progress", "pipe:1", "-nostats", cmd[-1]]  # options go before the output file
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                on_progress(max(int(value), 0) / 1e6)
        code = proc.wait()
        err.seek(0)
        stderr = err.read()
    if code != 0:
        raise FFmpegError(f"{what} failed with exit code {code}", cmd=cmd, stderr=stderr)
    return subprocess.CompletedProcess(cmd, code, "", stderr)


def probe_json(path: str | Path) -> dict[str, Any]:
    """``ffprobe -show_format -show_streams`` as a dict."""
    cmd = [ffprobe_bin(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FFmpegError(f"ffprobe could not read {path}", cmd=cmd, stderr=proc.stderr)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@functools.lru_cache(maxsize=4)
def encoders(binary: str | None = None) -> frozenset[str]:
    """Names of the video/audio encoders this ffmpeg was built with."""
    proc = subprocess.run([binary or ffmpeg_bin(), "-hide_banner", "-encoders"], capture_output=True, text=True)
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)
