"""Typed builder arguments for the Serve app (``app_builder(args)``), validated by pydantic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clockwork.postback import DEFAULT_DENY


class AppArgs(BaseModel):
    """Everything the app needs that is not a replica count or a GPU fraction (those live in config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    media_roots: list[str] = Field(default_factory=list, description="directories videos may be read from")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite in $CLOCKWORK_DATA_DIR")
    labels: list[str] = Field(default_factory=lambda: ["clock"], description="default labels when a request names none")
    min_score: float = Field(0.5, ge=0, le=1)
    postback_secret: str | None = Field(None, description="HMAC-SHA256 key for postback signatures")
    api_token: str | None = Field(None, description="bearer token required on every route but /healthz")
    postback_allow: list[str] = Field(default_factory=list, description="CIDRs or host names; if set, only these")
    postback_deny: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY))
    postback_max_attempts: int = Field(6, ge=1)
    postback_base_delay_s: float = Field(0.5, gt=0)
    postback_max_delay_s: float = Field(30.0, gt=0)
    postback_timeout_s: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_active_jobs: int = Field(1000, ge=1, description="queued + running jobs before POST answers 429")
    idempotency_window_s: float = Field(600.0, ge=0)
    chunk_s: float = Field(120.0, gt=0, description="videos longer than this are cut into chunks run in parallel")
    max_chunks_in_flight: int = Field(8, ge=1)
    chunk_retries: int = Field(3, ge=0, description="retries of a chunk whose detector replica died")
    max_job_attempts: int = Field(3, ge=1, description="runs of a job across app restarts before it is marked failed")
    lease_s: float = Field(20.0, gt=1, description="a job whose runner stops renewing for this long is resumed elsewhere")
    reaper_interval_s: float = Field(2.0, gt=0)

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
    frames_per_call: int = Field(8, ge=1, description="frames a chunk sends to the batcher at a time")
    max_batch_frames: int = Field(64, ge=1, description="frames per inference batch across requests")
    batch_wait_timeout_s: float = Field(0.02, ge=0)
    half: bool = Field(True, description="fp16 on CUDA; ignored on the CPU")
    nvdec: bool = Field(True, description="decode with NVDEC where the file allows; the CPU otherwise")
    memory_fraction: float | None = Field(None, gt=0, le=1, description="cap on this replica's PyTorch GPU memory")
