"""Media roots: where videos may be read from, and how a requested name is confined to them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg")


class PathNotAllowedError(ValueError):
    """The requested file resolves outside every configured media root."""


def resolve_in_roots(filename: str, roots: Iterable[str | Path]) -> Path:
    """Resolve ``filename`` (relative to a root, or absolute) after following symlinks, and return it
    only if it lies inside one of ``roots``. ``..`` tricks and symlinks that escape are refused."""
    roots = [Path(r).resolve() for r in roots]
    if not roots:
        raise PathNotAllowedError("no media roots are configured")
    if not filename or "\x00" in filename:
        raise PathNotAllowedError(f"invalid filename {filename!r}")
    candidates = [Path(filename)] if os.path.isabs(filename) else [root / filename for root in roots]
    fallback = None
    for cand in candidates:
        real = cand.resolve()  # follows every symlink on the way
        inside = any(real == root or root in real.parents for root in roots)
        if os.path.lexists(cand):  # the file (or a link) is there: it decides
            if inside:
                return real
            break
        if inside and fallback is None:
            fallback = real  # not there in any root: the caller answers "not found"
    else:
        if fallback is not None:
            return fallback
    raise PathNotAllowedError(f"filename {filename!r} resolves outside the media roots ({', '.join(map(str, roots))})")


def list_videos(root: str | Path) -> Iterator[Path]:
    """Video files under ``root``, sorted, by suffix."""
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."):
            yield path
