"""Where detections become segments: runs of frames that show a label, in true seconds.

The rules count by frame number and timestamp, never by list position (the original splitter's
bug, which also truncated times to whole seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from clockwork.settings import SEGMENTS
from clockwork.timeread.clocktime import ClockTime


@dataclass(frozen=True)
class SegmentRules:
    """``gap_s``: detections closer than this join one segment. ``min_length_s``: shorter segments
    are dropped. ``padding_s``: added at both ends, clipped to the video. ``max_length_s``: longer
    segments are split into consecutive pieces no longer than this (None: no limit)."""

    gap_s: float = SEGMENTS.gap_s
    min_length_s: float = SEGMENTS.min_length_s
    padding_s: float = SEGMENTS.padding_s
    max_length_s: float | None = SEGMENTS.max_length_s

    def __post_init__(self) -> None:
        for name in ("gap_s", "min_length_s", "padding_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Invalid {name} ({value!r}). Supported values are finite numbers >= 0.")
        if self.max_length_s is not None and not (math.isfinite(self.max_length_s) and self.max_length_s > 0):
            raise ValueError(
                f"Invalid max_length_s ({self.max_length_s!r}). Supported values are None or a number > 0."
            )


@dataclass(frozen=True)
class Hit:
    """One frame that shows ``label`` with its best ``score``."""

    frame_no: int
    timestamp_s: float
    label: str
    score: float
    strong: bool = True  # at or above the start threshold; a weak hit only continues a segment (hysteresis)


@dataclass(frozen=True)
class Segment:
    label: str
    start_s: float
    end_s: float
    start_frame: int  # first frame with a detection
    end_frame: int  # last frame with a detection
    max_score: float
    frames: int  # frames with a detection inside the segment
    track: int | None = None  # the clock it follows: the track (``Detection.track``) seen most inside it
    clock_time: ClockTime | None = None  # that clock's fused reading at start_s (--read-time)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "max_score": round(self.max_score, 4),
            "frames": self.frames,
            "track": self.track,
            **({"clock_time": self.clock_time.to_json()} if self.clock_time else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Segment:
        return cls(
            d["label"],
            float(d["start_s"]),
            float(d["end_s"]),
            int(d["start_frame"]),
            int(d["end_frame"]),
            float(d["max_score"]),
            int(d["frames"]),
            d.get("track"),
            ClockTime.from_json(d.get("clock_time")),
        )


def segment_fps(fps: float, sample_fps: float | None) -> float:
    """The rate at which detections were taken: a sampled frame stands for the whole sampling interval."""
    return min(fps, sample_fps) if sample_fps and fps else fps


def build_segments(
    hits: Iterable[Hit],
    *,
    fps: float,
    duration_s: float,
    rules: SegmentRules = SegmentRules(),
) -> list[Segment]:
    """Group per-frame hits into segments per label, sorted by start time then label.

    A hit at time t covers [t, t + frame interval). Two hits of a label join when the time between
    the end of one and the start of the next is at most ``gap_s``. Hysteresis: a segment starts at a
    strong hit (at or above the threshold) and continues over weak ones (above the lower hold
    threshold), so a clock that dips for a few frames neither splits nor shortens its segment; a run of
    weak hits alone is no segment.
    """
    frame_s = 1.0 / fps if fps and fps > 0 else 0.0
    by_label: dict[str, list[Hit]] = {}
    for hit in hits:
        by_label.setdefault(hit.label, []).append(hit)
    out: list[Segment] = []
    for label, items in by_label.items():
        items.sort(key=lambda h: (h.timestamp_s, h.frame_no))
        runs: list[list[Hit]] = []
        for hit in items:
            if runs and hit.timestamp_s - (runs[-1][-1].timestamp_s + frame_s) <= rules.gap_s + 1e-9:
                runs[-1].append(hit)
            else:
                runs.append([hit])
        for run in runs:
            first_strong = next((i for i, h in enumerate(run) if h.strong), None)
            if first_strong is None:
                continue
            run = run[first_strong:]
            start = run[0].timestamp_s
            end = run[-1].timestamp_s + frame_s
            if duration_s > 0:
                end = min(end, duration_s)
            if end - start + 1e-9 < rules.min_length_s:
                continue
            for piece in _split(run, start, end, rules.max_length_s):
                p_hits, p_start, p_end = piece
                p_start = max(0.0, p_start - rules.padding_s)
                p_end = p_end + rules.padding_s
                if duration_s > 0:
                    p_end = min(p_end, duration_s)
                out.append(
                    Segment(
                        label,
                        p_start,
                        p_end,
                        p_hits[0].frame_no,
                        p_hits[-1].frame_no,
                        max(h.score for h in p_hits),
                        len(p_hits),
                    )
                )
    out.sort(key=lambda s: (s.start_s, s.label))
    return out


def _split(run: list[Hit], start: float, end: float, max_len: float | None) -> Iterator[tuple[list[Hit], float, float]]:
    if max_len is None or end - start <= max_len + 1e-9:
        yield run, start, end
        return
    t = start
    while t < end - 1e-9:
        t_end = min(t + max_len, end)
        piece = [h for h in run if t - 1e-9 <= h.timestamp_s < t_end - 1e-9]
        if piece:
            yield piece, t, t_end
        t = t_end
