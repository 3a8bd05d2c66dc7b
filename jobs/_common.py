"""Shared plumbing of the Ray job entrypoints: logging, Ray connection, exits with one clear line."""

from __future__ import annotations

import logging
import sys

import ray

from clockwork import ffmpeg
from clockwork.errors import FFmpegError

EXIT_OK, EXIT_PARTIAL, EXIT_FATAL = 0, 1, 2


class Fatal(Exception):
    """The job cannot go on; the message is printed as one line and the exit status is 2."""


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clockwork").setLevel(logging.INFO)


def require_ffmpeg() -> None:
    try:
        ffmpeg.ffmpeg_bin()
        ffmpeg.ffprobe_bin()
    except FFmpegError as exc:
        raise Fatal(str(exc)) from None


def connect() -> None:
    """Join the cluster ``ray job submit`` runs us on (RAY_ADDRESS), or start a local Ray."""
    if not ray.is_initialized():
        ray.init(log_to_driver=True)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def run(main, argv=None, prog: str = "job") -> int:
    try:
        return main(argv)
    except Fatal as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
