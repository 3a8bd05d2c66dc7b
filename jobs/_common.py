"""Shared plumbing of the Ray job entrypoints: logging, Ray connection, exits with one clear line."""

from __future__ import annotations

import logging
import sys

import ray

from clockwork.errors import FFmpegError
from clockwork.video import ffmpeg

EXIT_OK, EXIT_PARTIAL, EXIT_FATAL = 0, 1, 2


class Fatal(Exception):
    """The job cannot go on; the message is printed as one line and the exit status is 2."""


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("clockwork").setLevel(logging.INFO)


def require_ffmpeg() -> None:
    try:
        ffmpeg.ffmpeg_bin()
        ffmpeg.ffprobe_bin()
    except FFmpegError as exc:
        raise Fatal(str(exc)) from None


def open_catalog(url: str | None):
    """The catalog the job works on; refused, with one line, when it would live inside Ray's temporary copy
    of the working directory (it would vanish, and the next job would find another, empty one)."""
    from clockwork.store.catalog import Catalog, default_url

    url = url or default_url()
    if url.startswith("sqlite:") and "/runtime_resources/" in url:
        raise Fatal(
            f"the catalog {url} is inside Ray's temporary copy of the working directory; pass --database-url "
            "or set CLOCKWORK_DATA_DIR to a folder that outlives the job"
        )
    return Catalog(url)


CONNECT_TIMEOUT_S = 10.0


def _known_cluster() -> tuple[str, str] | None:
    """The address Ray would join and where it comes from: RAY_ADDRESS, else the cluster ``ray start`` last
    recorded on this machine (Ray's ``ray_current_cluster`` file); None when it would start a local Ray."""
    import tempfile
    from pathlib import Path

    from clockwork import settings

    given = (settings.env("RAY_ADDRESS", str, None) or "").strip()
    if given and given not in ("local", "auto"):
        return given, "RAY_ADDRESS"
    if given == "local":
        return None
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        address = recorded.read_text().strip()
    except OSError:
        return None
    return (address, str(recorded)) if address else None


def _reachable(address: str, timeout_s: float) -> bool:
    """Whether the cluster's GCS (``host:port``, or the dashboard's ``http://host:port``) takes a TCP connection."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "ray":  # a Ray client address: Ray reports its own errors
        return True
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout_s):
            return True
    except OSError:
        return False


def connect(timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Join the cluster ``ray job submit`` runs us on (RAY_ADDRESS), the one ``ray start`` left on this machine,
    or start a local Ray. A cluster that does not answer within ``timeout_s`` is one line, not a hang."""
    if ray.is_initialized():
        return
    known = _known_cluster()
    if known is not None and not _reachable(known[0], timeout_s):
        address, source = known
        raise Fatal(
            f"no Ray cluster answers at {address} (from {source}) within {timeout_s:g} s; start one with "
            "`ray start --head`, or run with RAY_ADDRESS=local for a Ray of the job's own"
        )
    ray.init(address=known[0] if known else None, log_to_driver=True)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def parse_args(parser, argv):
    """``parser.parse_args``, naming an unknown flag before any missing one (argparse names the missing first)."""
    required = [a for a in parser._actions if a.required]
    for action in required:
        action.required = False
    try:
        _, unknown = parser.parse_known_args(argv)
    finally:
        for action in required:
            action.required = True
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return parser.parse_args(argv)


def run(main, argv=None, prog: str = "job") -> int:
    try:
        return main(argv)
    except Fatal as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
