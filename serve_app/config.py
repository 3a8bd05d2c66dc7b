"""Typed builder arguments for the Serve app (``app_builder(args)``), validated by pydantic.

Every default comes from ``clockwork.settings``; the environment is read there too (``from_env``).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clockwork import settings
from clockwork.settings import DETECT, LIMITS, SERVE_BATCH
from clockwork.store.postback import DEFAULT_DENY, RetryPolicy


class AppArgs(BaseModel):
    """Everything the app needs that is not a replica count or a GPU fraction (those live in config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    media_roots: list[str] = Field(default_factory=list, description="directories videos may be read from")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite in $CLOCKWORK_DATA_DIR")
    labels: list[str] = Field(
        default_factory=lambda: list(DETECT.labels), description="default labels when a request names none"
    )
    min_score: float = Field(DETECT.min_score, ge=0, le=1)
    sample_fps: float | None = Field(
        DETECT.sample_fps, ge=0, description="default rate of sampled mode (no scan); 0 or None: every frame"
    )
    scan: bool = Field(
        DETECT.scan,
        description="coarse-to-fine scan by default (clockwork.timeline.scan); a request's sample_fps turns it off",
    )
    views: list[str] = Field(default_factory=lambda: list(DETECT.views), description="default views of each frame")
    multiscale_fps: float | None = Field(
        DETECT.multiscale_fps,
        ge=0,
        description="where every frame is examined, the views "
        "after the first run this many frames a second; 0 or None: every frame",
    )
    postback_secret: str | None = Field(None, description="HMAC-SHA256 key for postback signatures")
    api_token: str | None = Field(
        None,
        description="bearer token required on every route but the probes "
        "(/healthz, /readyz) and the contract (/openapi.json, /docs)",
    )
    postback_allow: list[str] = Field(default_factory=list, description="CIDRs or host names; if set, only these")
    postback_deny: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY))
    postback_max_attempts: int = Field(RetryPolicy.max_attempts, ge=1)
    postback_base_delay_s: float = Field(RetryPolicy.base_delay_s, gt=0)
    postback_max_delay_s: float = Field(RetryPolicy.max_delay_s, gt=0)
    postback_timeout_s: float = Field(RetryPolicy.timeout_s, gt=0, description="total deadline of one attempt")
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_frame_pixels: int = Field(
        LIMITS.max_frame_pixels, ge=1, description="videos with larger frames are refused (422)"
    )
    max_duration_s: float = Field(LIMITS.max_duration_s, gt=0, description="longer videos are refused (422)")
    max_postbacks_in_flight: int = Field(
        32, ge=1, description="postback attempts at once; slow receivers wait for a slot"
    )
    public_url: str | None = Field(
        None, description="base of the URLs the API hands out (status_url, Location); default: relative"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="web origins (scheme://host:port) besides the "
        "server's own whose pages may POST or DELETE here; a request with another Origin is 403",
    )
    max_active_jobs: int = Field(1000, ge=1, description="queued + running jobs before POST answers 429")
    # Checking a video is CPU work in the API process (about 0.2 s for a 1080p film): taken a few at a time in the
    # order posted, the first job of a crowd starts at once instead of after every check (docs/OPERATIONS.md).
    video_checks_in_flight: int = Field(
        4, ge=1, description="videos checked at once (POST and a job's start); the rest wait in turn"
    )
    idempotency_window_s: float = Field(600.0, ge=0)
    # 30 s: a film's last chunks (fewer than the decoders) leave less of the card idle, and a kept decoder makes a
    # chunk's start cheap (DETECT.nvdec_reuse); measured against 60 s and 120 s in docs/OPERATIONS.md, Sizing.
    chunk_s: float = Field(
        30.0, gt=0, description="videos longer than 1.5 chunk_s are cut into chunks of about chunk_s run in parallel"
    )
    max_chunks_in_flight: int = Field(8, ge=1)
    max_chunks_total: int | None = Field(
        None,
        ge=1,
        description="chunks in flight across every job of one API replica; with a "
        "fixed detector pool, its replicas x decoders, so chunks wait here and go to the first "
        "replica with a free decoder instead of queueing inside a busy one (README, Sizing)",
    )
    chunk_retries: int = Field(3, ge=0, description="retries of a chunk whose detector replica died")
    max_job_attempts: int = Field(3, ge=1, description="runs of a job across app restarts before it is marked failed")
    lease_s: float = Field(
        20.0, gt=1, description="a job whose runner stops renewing for this long is resumed elsewhere"
    )
    reaper_interval_s: float = Field(2.0, gt=0)
    cache_dir: str | None = Field(
        None,
        description="where the web pages keep the annotated videos they draw; "
        "default: annotated/ in $CLOCKWORK_DATA_DIR",
    )

    @field_validator("media_roots", "postback_allow", "postback_deny", "labels", "allowed_origins", mode="before")
    @classmethod
    def _lists_from_strings(cls, value):
        """Builder arguments from the CLI (``serve run ... media_roots=a,b``) arrive as strings."""
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = [v for v in value.split(",") if v]
            return parsed if isinstance(parsed, list) else [parsed]
        return value

    @field_validator("media_roots")
    @classmethod
    def _roots_exist(cls, roots: list[str]) -> list[str]:
        from pathlib import Path

        for root in roots:
            if not Path(root).is_dir():
                raise ValueError(f"media root {root!r} is not a directory")
        return [str(Path(r).resolve()) for r in roots]


class DetectorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = "auto"
    frames_per_call: int = Field(
        SERVE_BATCH.frames_per_call, ge=1, description="frames a chunk sends to the batcher at a time"
    )
    max_batch_frames: int = Field(
        SERVE_BATCH.max_batch_frames, ge=1, description="frames per inference batch across requests"
    )
    batch_wait_timeout_s: float = Field(SERVE_BATCH.batch_wait_timeout_s, ge=0)
    decoders: int = Field(
        SERVE_BATCH.decoders, ge=1, description="chunks this replica decodes at once; more wait their turn"
    )
    half: bool = Field(DETECT.half, description="fp16 on CUDA; ignored on the CPU")
    nvdec: bool = Field(DETECT.nvdec, description="decode with NVDEC where the file allows; the CPU otherwise")
    nvdec_reuse: bool = Field(
        DETECT.nvdec_reuse,
        description="point a finished chunk's NVDEC decoder at the next chunk "
        "instead of ending it (ending one holds the GIL)",
    )
    nvdec_stream: bool = Field(
        DETECT.nvdec_stream,
        description="each NVDEC decoder converts frames on a CUDA stream of its "
        "own, not the model's (the null stream, where every frame waited for the model's kernels)",
    )
    memory_fraction: float | None = Field(None, gt=0, le=1, description="cap on this replica's PyTorch GPU memory")
    head: str | None = Field(
        DETECT.head,
        description="fine-tuned heads over COCO's model: clock (embedded), none, or a head file "
        "(docs/DETECTOR.md); a head finds only its labels",
    )


class BuilderArgs(AppArgs):
    """``app_builder``'s typed argument (Ray Serve's typed application builder pattern): the app's
    arguments plus the detector's and its placement."""

    detector: DetectorArgs = Field(default_factory=DetectorArgs)
    detector_num_gpus: float | None = Field(None, ge=0, description="GPU per replica; default 0.25 with a GPU, else 0")
    detector_num_cpus: float = Field(
        2, gt=0, description="also torch's thread count on the CPU (Ray sets OMP_NUM_THREADS)"
    )
    detector_replicas: int = Field(1, ge=1)
    detector_max_ongoing_requests: int = Field(
        SERVE_BATCH.max_ongoing_requests,
        ge=1,
        description="calls a detector replica takes at once (chunks and the API's "
        "small calls); decoders + 1 with max_chunks_total (README, Sizing)",
    )
    ingress_replicas: int = Field(
        1, ge=1, description="API replicas; each runs the jobs posted to it (one carried four GPUs, docs/records/)"
    )

    @field_validator("detector", mode="before")
    @classmethod
    def _detector_from_string(cls, value):
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _environment_under_explicit(cls, data):
        """Secrets and roots from the environment (KubeRay passes a Secret's keys this way); explicit
        arguments win."""
        env = {
            "media_roots": settings.media_roots(),
            "postback_secret": settings.postback_secret(),
            "api_token": settings.api_token(),
            "database_url": settings.database_url(),
            "postback_allow": settings.postback_allow(),
        }
        return {**{k: v for k, v in env.items() if v}, **(data or {})}

    def app_args(self) -> AppArgs:
        return AppArgs(**self.model_dump(include=set(AppArgs.model_fields)))
