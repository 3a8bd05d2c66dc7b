"""How a video is looked at: one validated value, built once where a request enters (the HTTP API, the CLI, the
jobs) and passed unchanged through the catalog (``to_json``), the Ray handle and the detector.

    from clockwork.timeline.options import DetectOptions

    options = DetectOptions()                                   # the defaults of clockwork.settings.DETECT: a scan
    options = DetectOptions.resolve(sample_fps=0)               # every frame (naming a rate turns the scan off)
    options = DetectOptions.resolve(scan=False, views=["full"]) # sampled mode at DETECT.sample_fps, one view
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from clockwork.settings import DETECT
from clockwork.timeline.scan import resolve_mode
from clockwork.video.views import parse_views

Thresholds = float | Mapping[str, float]


@dataclass(frozen=True)
class DetectOptions:
    """``labels``: the class names kept (None: every class the detector finds). ``min_score``: where a segment starts
    (one number, or one per label). ``scan``: coarse-to-fine (``clockwork.timeline.scan``); without it, ``sample_fps``
    frames a
    second, None for every frame. ``views`` of each frame (``clockwork.video.views``); where every frame is examined,
    the
    views after the first run ``multiscale_fps`` frames a second (None: every frame). ``read_time``: read the clocks'
    dials and drop a clock never readable."""

    labels: tuple[str, ...] | None = DETECT.labels
    min_score: Thresholds = DETECT.min_score
    scan: bool = DETECT.scan
    sample_fps: float | None = None
    views: tuple[str, ...] = DETECT.views
    multiscale_fps: float | None = DETECT.multiscale_fps
    read_time: bool = DETECT.read_time

    def __post_init__(self) -> None:
        if self.labels is not None:
            if isinstance(self.labels, str) or not all(isinstance(label, str) and label for label in self.labels):
                raise ValueError(
                    f"Invalid labels ({self.labels!r}). Supported values are class names, or None for every class."
                )
            object.__setattr__(self, "labels", tuple(self.labels))
        scores = self.min_score.values() if isinstance(self.min_score, Mapping) else [self.min_score]
        if not all(isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0 for v in scores):
            raise ValueError(f"Invalid min_score ({self.min_score!r}). Supported values are numbers from 0 to 1.")
        if isinstance(self.min_score, Mapping):
            object.__setattr__(self, "min_score", {str(k): float(v) for k, v in self.min_score.items()})
        else:
            object.__setattr__(self, "min_score", float(self.min_score))
        for name in ("sample_fps", "multiscale_fps"):
            rate = getattr(self, name)
            if rate is not None and not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
                raise ValueError(
                    f"Invalid {name} ({rate!r}). Supported values are a positive number of frames a second, "
                    "or None for every frame."
                )
        if self.scan and self.sample_fps is not None:
            raise ValueError(
                "sample_fps sets the rate of sampled mode, and a scan chooses its own frames: "
                "leave sample_fps out, or turn the scan off"
            )
        object.__setattr__(self, "views", parse_views(self.views))

    @classmethod
    def resolve(
        cls,
        *,
        scan: bool | None = None,
        sample_fps: float | None = None,
        defaults: DetectOptions | None = None,
        default_sample_fps: float | None = DETECT.sample_fps,
        **fields: Any,
    ) -> DetectOptions:
        """Options from what a caller said, the rest from ``defaults``. ``None`` is "not said"; a ``sample_fps`` of 0 is
        every frame. Naming a ``sample_fps`` asks for sampled mode; naming it with ``scan=True`` is refused
        (``clockwork.timeline.scan.resolve_mode``, the one mode rule). Fields given as None take the default."""
        base = defaults or cls()
        if sample_fps is not None and not (math.isfinite(sample_fps) and sample_fps >= 0):
            raise ValueError(
                f"Invalid sample_fps ({sample_fps!r}). Supported values are 0 (every frame) or a positive number."
            )
        said_scan, rate = resolve_mode(
            scan,
            sample_fps,
            default_scan=base.scan,
            default_sample_fps=base.sample_fps if not base.scan else default_sample_fps,
        )
        given = {k: v for k, v in fields.items() if v is not None}
        if "multiscale_fps" in given:
            given["multiscale_fps"] = float(given["multiscale_fps"]) or None  # 0: every frame
        return replace(base, **given, scan=said_scan, sample_fps=None if said_scan else rate)

    def every_frame(self) -> bool:
        return not self.scan and self.sample_fps is None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = list(self.labels) if self.labels is not None else None
        out["views"] = list(self.views)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DetectOptions:
        """The inverse of ``to_json``; a job stored before a field existed ran without it (one view, no scan, its dials
        unread), and gets that."""
        known = {k: doc[k] for k in ("labels", "min_score", "sample_fps", "multiscale_fps") if k in doc}
        return cls(
            **known,
            scan=bool(doc.get("scan", False)),
            views=tuple(doc.get("views") or ("full",)),
            read_time=bool(doc.get("read_time", False)),
        )

    def with_labels(self, labels: Sequence[str] | None) -> DetectOptions:
        return replace(self, labels=tuple(labels) if labels is not None else None)
