"""Media roots: where videos may be read from, and how a requested name is confined to them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg")


class PathNotAllowedError(ValueError):
    """The requested file resolves outside every configured media root."""


MAX_NAME_BYTES = 255  # one path component, as Linux file systems allow
MAX_PATH_BYTES = 4096


def resolve_in_roots(filename: str, roots: Iterable[str | Path]) -> Path:
    """Resolve ``filename`` (relative to a root, or absolute) after following symlinks, and return it
    only if it lies inside one of ``roots``. ``..`` tricks and symlinks that escape are refused.
    Messages name the file as given, never the server's roots."""
    roots = [Path(r).resolve() for r in roots]
    if not roots:
        raise PathNotAllowedError("no media roots are configured")
    if not filename or "\x00" in filename:
        raise PathNotAllowedError(f"invalid filename {filename!r}")
    encoded = filename.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise PathNotAllowedError(
            f"filename is too long: at most {MAX_NAME_BYTES} bytes a name and {MAX_PATH_BYTES} in all"
        )
    candidates = [Path(filename)] if os.path.isabs(filename) else [Path(root) / filename for root in roots]
    fallback = None
    for cand in candidates:
        try:
            real = cand.resolve()  # follows every symlink on the way
            there = os.path.lexists(cand)
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name the file system refuses
            # RuntimeError's text ("Symlink loop from '/srv/...'") names a server path: say what it is instead
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a symlink loop"
            raise PathNotAllowedError(f"filename {filename!r} cannot be resolved: {why}") from None
        inside = any(real == root or root in real.parents for root in roots)
        if there:  # the file (or a link) is there: it decides
            if inside:
                return real
            break
        if inside and fallback is None:
            fallback = real  # not there in any root: the caller answers "not found"
    else:
        if fallback is not None:
            return fallback
    raise PathNotAllowedError(f"filename {filename!r} resolves outside the media roots")


def relative_name(path: str | Path, roots: Iterable[str | Path]) -> str:
    """``path`` as a caller would name it: relative to the media root that holds it (else its base name)."""
    path = Path(path)
    for root in roots:
        try:
            return str(path.relative_to(Path(root).resolve()))
        except ValueError:
            continue
    return path.name


@contextlib.contextmanager
def open_confined(path: str | Path, roots: Iterable[str | Path] | None) -> Iterator[str]:
    """Open ``path`` and yield a name for the very file that was opened (``/proc/self/fd/N``), after
    checking that this file, not whatever the name points to now, lies inside ``roots``. A file
    swapped for a symlink between the API's check and the read is refused here. No roots: no check."""
    roots = [Path(r).resolve() for r in roots or []]
    if not roots:
        yield str(path)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PathNotAllowedError(f"{Path(path).name}: cannot be opened safely ({exc.strerror})") from None
    try:
        proc = f"/proc/self/fd/{fd}"
        real = Path(os.readlink(proc)) if os.path.exists(proc) else Path(path).resolve()
        if not any(real == root or root in real.parents for root in roots):
            raise PathNotAllowedError(f"{Path(path).name}: resolves outside the media roots")
        yield proc if os.path.exists(proc) else str(real)
    finally:
        os.close(fd)


def list_videos(root: str | Path) -> Iterator[Path]:
    """Video files under ``root``, sorted, by suffix."""
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."):
            yield path
