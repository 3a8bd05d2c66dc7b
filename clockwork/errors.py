"""Typed errors. Each names the bad value and what was expected, and carries structured fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ClockworkError(Exception):
    """Base class for every error the project raises on purpose."""


class VideoError(ClockworkError):
    """A video cannot be used. ``path`` is the file, ``reason`` says why in a few words."""

    kind = "unusable video"

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.kind}: {self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling across Ray processes with its fields
        return (self.__class__, (self.path, self.reason))

    def public(self, name: str) -> str:
        """The message with the file named as the caller named it (no server paths)."""
        return f"{self.kind}: {name}: {self.reason}"


class VideoNotFoundError(VideoError):
    kind = "video not found"


class NotAVideoError(VideoError):
    kind = "not a video file"


class NoVideoStreamError(VideoError):
    kind = "no video stream"


class CorruptVideoError(VideoError):
    kind = "corrupt or truncated video"


class VideoTooLargeError(VideoError):
    """The frame size or the duration is over a configured limit (``clockwork.settings.LIMITS``)."""

    kind = "video over the limits"


class ModelError(ClockworkError):
    """The model files are missing, malformed or fail their hash."""


class FFmpegError(ClockworkError):
    """ffmpeg or ffprobe is missing or failed. ``stderr`` holds the tail of its output."""

    def __init__(self, message: str, *, cmd: list[str] | None = None, stderr: str = ""):
        self.message = message
        self.cmd = cmd or []
        self.stderr = stderr
        super().__init__(message + (f"\n{stderr.strip()[-800:]}" if stderr.strip() else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ffmpeg_error, (self.__class__, self.message, self.cmd, self.stderr))


def _rebuild_ffmpeg_error(cls: type[FFmpegError], message: str, cmd: list[str], stderr: str) -> FFmpegError:
    return cls(message, cmd=cmd, stderr=stderr)


def unknown_label_message(label: str, known: list[str]) -> str:
    """``Unknown label 'clok' (did you mean 'clock'?) ...``: the closest class names first."""
    import difflib

    close = difflib.get_close_matches(label, known, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"Unknown label {label!r}{hint}. Supported values are the model's class names, e.g. {', '.join(known[:5])}, ..."
    )
