"""Every default and every environment variable of the project, defined once.

The CLI's argparse defaults, the Serve app's pydantic arguments, the Ray jobs and the benchmarks read
their defaults from the dataclasses here; nothing else in the project reads ``os.environ``.

Environment variables are read through :func:`env`, modelled on Starlette's ``Config``: a value that
does not parse raises at once with the variable's name, so a typo never becomes a silent default.
:data:`ENVIRONMENT` lists every variable (the README's table is checked against it by a test).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")
D = TypeVar("D")


_MISSING = object()


# -- defaults --------------------------------------------------------------------------------------

CLOCK_LABEL = "clock"  # the first target; the result's legacy fields has_clock/clock_frames count it


@dataclass(frozen=True)
class DetectDefaults:
    """What a detection run does when the caller says nothing."""

    labels: tuple[str, ...] = (CLOCK_LABEL,)
    # Detection heads over COCO's YOLOv3-tiny: "clock" is the embedded fine-tuned clock head, which finds clocks only;
    # None keeps COCO's own heads and every COCO label. Why the clock head and 0.7: docs/SCAN.md.
    head: str | None = "clock"
    min_score: float = 0.7
    # Frames a second detected in sampled mode (None: every frame): the cost of one view of every frame, with six.
    sample_fps: float | None = 5.0
    # Coarse-to-fine scanning (clockwork.timeline.scan), on by default because a film then costs a few frames a second
    # with every-frame boundaries (docs/SCAN.md). A sample_fps turns it off; scan=False with no rate is every frame.
    scan: bool = True
    scan_fps: float = 2.0
    iou_threshold: float = 0.45
    # Which views of each frame the model sees (clockwork.video.views) and, in the merge, the share of a box
    # inside a higher-scoring box of its class above which it is dropped.
    # The clock head trained on clocks up to 1.5x the frame height, so the zoomed-out view adds nothing for it
    # (docs/DETECTOR.md); with COCO's heads (head None) add "zoomout" for frame-filling clocks.
    views: tuple[str, ...] = ("full", "tiles")
    # Where every frame is examined (every-frame mode, a scan's refined windows), the views after the first run on
    # at most this many frames a second (clockwork.video.views.view_stride; None: on every frame). The first view
    # (full) still sees every frame; a clock that only the zoomed-out view or the tiles find is then placed
    # to within 1/multiscale_fps s, and the model sees 2 inputs a frame at 25 fps instead of 6 (docs/PERFORMANCE.md).
    # Sampled mode and a scan's coarse pass show every view of each frame.
    multiscale_fps: float | None = 5.0
    # Hysteresis: a segment goes on through frames whose best score is at least hold_ratio x min_score.
    hold_ratio: float = 0.6
    # Reading the time: each clock's dial read read_fps times a second (clockwork.timeread.reader), one fused reading
    # per
    # segment. It also checks what was found: a clock track read at least once and never readable (at
    # readable_threshold) makes no segment (clockwork.timeline.pipeline.drop_unreadable_tracks): the emblems, moons and
    # wheels the clock head fired on read as unreadable, every clock of the evaluation sets as readable
    # (docs/DETECTOR.md). read_time=False keeps every clock found, unread and unchecked.
    read_time: bool = True
    read_fps: float = 2.0
    readable_threshold: float = 0.5
    # Tracks: a detection joins the track whose last box overlaps it at least this much (IoU).
    track_iou: float = 0.3
    contain_threshold: float = 0.8
    # A tile's box ending within this many network pixels of the tile's inner edge is a cut object and is
    # dropped: the model stops a cut clock's box a few pixels short of the edge (4.4 px seen), and 2 px let one win
    # NMS against the whole clock on the CPU only.
    tile_edge_px: float = 8.0
    # Frames per decode batch: the CPU path feeds the model one frame at a time inside the batch (cache-bound
    # otherwise; docs/PERFORMANCE.md); the NVDEC path hands the whole batch to the model.
    cpu_batch: int = 16
    gpu_batch: int = 32
    half: bool = True  # fp16 on CUDA; ignored on the CPU
    nvdec: bool = True  # decode with NVDEC where the file allows it
    # A finished chunk's NVDEC decoder is kept for the next chunk (clockwork.video.nvdec.DecoderPool): ending one holds
    # the GIL about 0.1 s.
    nvdec_reuse: bool = True
    # Each NVDEC decoder converts frames on a CUDA stream of its own, not the null stream (the model's), where it
    # would wait for the model's queued kernels after every frame (clockwork.video.nvdec._Session; docs/PERFORMANCE.md).
    nvdec_stream: bool = True


@dataclass(frozen=True)
class ServeBatchDefaults:
    """How the Serve detector batches frames across requests (config.yaml's user_config may change it)."""

    frames_per_call: int = 8
    max_batch_frames: int = 64
    batch_wait_timeout_s: float = 0.02
    # Calls one replica takes at once: chunks (each waits there for a decoder) and the API's small calls.
    max_ongoing_requests: int = 64
    # Chunks one replica decodes at once; the others wait their turn. Each open decoder holds about 0.8 GB of GPU
    # memory at 1080p (too many end the process inside NVDEC); three a replica, eight replicas a card, is the
    # measured best (docs/OPERATIONS.md, Sizing).
    decoders: int = 3


@dataclass(frozen=True)
class SegmentDefaults:
    """How detections become segments (``clockwork.timeline.segments.SegmentRules`` takes these)."""

    gap_s: float = 0.5
    min_length_s: float = 0.5
    padding_s: float = 0.0
    max_length_s: float | None = None


@dataclass(frozen=True)
class ClipDefaults:
    """The one profile every snippet is normalised to."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    threads: int = 2


@dataclass(frozen=True)
class VideoLimits:
    """What a video may claim before it is refused: a small file can declare a huge frame or a long
    duration (a "bomb"). 8K UHD and two days, so a 24-hour film fits."""

    max_frame_pixels: int = 7680 * 4320
    max_duration_s: float = 48 * 3600.0


DETECT = DetectDefaults()
LIMITS = VideoLimits()
SERVE_BATCH = ServeBatchDefaults()
SEGMENTS = SegmentDefaults()
CLIPS = ClipDefaults()


# -- environment -----------------------------------------------------------------------------------

ENVIRONMENT: dict[str, str] = {
    "CLOCKWORK_MODEL_DIR": "where the default model is kept (default ~/.cache/clockwork/models)",
    "CLOCKWORK_DATA_DIR": "where the catalog and other state live (default $XDG_DATA_HOME/clockwork, else "
    "~/.local/share/clockwork)",
    "XDG_DATA_HOME": "read, never set: the user data folder CLOCKWORK_DATA_DIR defaults under",
    "CLOCKWORK_DATABASE_URL": "SQLAlchemy URL of the catalog (default sqlite in CLOCKWORK_DATA_DIR)",
    "CLOCKWORK_MEDIA_ROOTS": "colon-separated directories the API may read videos from",
    "CLOCKWORK_POSTBACK_SECRET": "HMAC-SHA256 key that signs postbacks",
    "CLOCKWORK_API_TOKEN": "bearer token the API requires (all but the probes /healthz and /readyz and the contract "
    "/openapi.json and /docs)",
    "CLOCKWORK_POSTBACK_ALLOW": "comma-separated CIDRs or host names postbacks may go to (e.g. 127.0.0.0/8 for a "
    "local receiver)",
    "CLOCKWORK_FFMPEG": "the ffmpeg binary (default: ffmpeg on PATH)",
    "CLOCKWORK_FFPROBE": "the ffprobe binary (default: ffprobe on PATH)",
    "PUSHGATEWAY_URL": "Prometheus Pushgateway the Ray jobs push their metrics to (unset: no push)",
    "CLOCKWORK_BENCH_NO_RECORD": "1: benchmarks print their figures without writing a record to docs/records/",
    "CLOCKWORK_BENCH_COMMIT": "the commit a benchmark record names (default: git's; set it where the tree is a copy, "
    "as on the GPU machine)",
    "CUDA_VISIBLE_DEVICES": "read, never set: maps a Ray worker's GPU index to NVML's physical index",
    "RAY_ADDRESS": "read, never set: the cluster a job run directly joins (`ray job submit` sets it; local: a Ray of "
    "its own)",
}


class ConfigError(ValueError):
    """An environment variable is missing or does not parse."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected one of 1/0/true/false/yes/no/on/off, got {raw!r}")


@overload
def env(key: str) -> str: ...
@overload
def env(key: str, cast: Callable[[str], T]) -> T: ...
@overload
def env(key: str, cast: Callable[[str], T], default: D) -> T | D: ...


def env(key: str, cast: Callable[[str], Any] = str, default: Any = _MISSING) -> Any:
    """Read ``key`` from the environment and cast it; fail loudly on a bad value."""
    if key not in ENVIRONMENT:
        raise ConfigError(f"{key} is not a documented environment variable; add it to settings.ENVIRONMENT")
    raw = os.environ.get(key)
    if raw is None or raw == "":
        if default is _MISSING:
            raise ConfigError(f"Config '{key}' is missing, and has no default.")
        return default
    if cast is bool:
        cast = _parse_bool
    try:
        return cast(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Config '{key}' has value {raw!r}, which is not a valid {getattr(cast, '__name__', cast)}: {exc}"
        ) from exc


def model_dir() -> Path:
    return env("CLOCKWORK_MODEL_DIR", Path, Path.home() / ".cache" / "clockwork" / "models")


def data_dir() -> Path:
    """Where the catalog lives by default: a stable user data folder, never the current directory (a Ray
    job's working directory is a temporary copy that changes with every upload)."""
    default = env("XDG_DATA_HOME", Path, Path.home() / ".local" / "share") / "clockwork"
    return env("CLOCKWORK_DATA_DIR", Path, default)


def database_url() -> str | None:
    return env("CLOCKWORK_DATABASE_URL", str, None)


def media_roots() -> list[str]:
    return [r for r in env("CLOCKWORK_MEDIA_ROOTS", str, "").split(":") if r]


def postback_secret() -> str | None:
    return env("CLOCKWORK_POSTBACK_SECRET", str, None)


def postback_allow() -> list[str]:
    return [r.strip() for r in env("CLOCKWORK_POSTBACK_ALLOW", str, "").split(",") if r.strip()]


def api_token() -> str | None:
    return env("CLOCKWORK_API_TOKEN", str, None)


def ffmpeg_name() -> str:
    return env("CLOCKWORK_FFMPEG", str, "ffmpeg")


def ffprobe_name() -> str:
    return env("CLOCKWORK_FFPROBE", str, "ffprobe")


def pushgateway_url() -> str | None:
    return env("PUSHGATEWAY_URL", str, None)


def visible_cuda_devices() -> list[str]:
    return [v.strip() for v in env("CUDA_VISIBLE_DEVICES", str, "").split(",") if v.strip()]
