"""The ffmpeg/ffprobe wrapper: find the binaries, run them, and turn failures into FFmpegError."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

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


def run(args: list[str], *, timeout: float | None = None, what: str = "ffmpeg") -> subprocess.CompletedProcess:
    """Run ``ffmpeg ARGS`` quietly; raise :class:`FFmpegError` with its stderr tail on failure."""
    cmd = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    logger.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{what} timed out after {timeout} s", cmd=cmd, stderr=str(exc.stderr or "")) from None
    if proc.returncode != 0:
        raise FFmpegError(f"{what} failed with exit code {proc.returncode}", cmd=cmd, stderr=proc.stderr)
    return proc


def probe_json(path: str | Path) -> dict:
    """``ffprobe -show_format -show_streams`` as a dict."""
    cmd = [ffprobe_bin(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FFmpegError(f"ffprobe could not read {path}", cmd=cmd, stderr=proc.stderr)
    return json.loads(proc.stdout)


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
