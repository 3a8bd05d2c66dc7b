"""The detection types: one :class:`Detection`, the detections of one frame, and the result of one video.

These are the only shapes a detection takes, from the model's output to the wire between Ray
processes, the catalog and the jobs; they hold no torch. The result is one JSON document, returned
by ``detect_video`` and posted back by the API, and ``from_json`` reads it back.

It keeps the original inference API's fields (``video_file``, ``fps``, ``has_clock``,
``clock_frames``, ``frame_data``) with corrected meanings (``x, y`` top-left, ``w, h`` width and
height in source pixels), and adds scores, labels, timestamps and segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clockwork.settings import CLOCK_LABEL
from clockwork.timeline.segments import Hit, Segment, SegmentRules, build_segments, segment_fps
from clockwork.timeread.clocktime import ClockTime

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object. ``x, y`` is the top-left corner; ``w, h`` the width and height, in source pixels."""

    x: float
    y: float
    w: float
    h: float
    label: str
    score: float
    track: int | None = None  # which clock: detections linked across frames by IoU share a track
    clock_time: ClockTime | None = None  # the time its dial shows, where it was read (--read-time)

    def __post_init__(self):
        if self.w < 0 or self.h < 0:
            raise ValueError(f"Detection width and height must be >= 0, got w={self.w}, h={self.h}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Detection score must be in [0, 1], got {self.score}")

    def to_json(self) -> dict:
        return {
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "w": round(self.w, 1),
            "h": round(self.h, 1),
            "type": self.label,
            "label": self.label,
            "score": round(self.score, 4),
            "track": self.track,
            **({"clock_time": self.clock_time.to_json()} if self.clock_time else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> Detection:
        return cls(
            float(d["x"]),
            float(d["y"]),
            float(d["w"]),
            float(d["h"]),
            str(d["label"]),
            float(d["score"]),
            d.get("track"),
            ClockTime.from_json(d.get("clock_time")),
        )


@dataclass(slots=True)
class FrameDetections:
    """The detections of one frame; ``frame_no`` counts every decoded frame from 0."""

    frame_no: int
    timestamp_s: float
    detections: list[Detection]

    def to_json(self) -> dict:
        return {
            "frame_no": self.frame_no,
            "timestamp_s": round(self.timestamp_s, 6),
            "detections": [d.to_json() for d in self.detections],
        }

    @classmethod
    def from_json(cls, d: dict) -> FrameDetections:
        return cls(int(d["frame_no"]), float(d["timestamp_s"]), [Detection.from_json(x) for x in d["detections"]])

    def best_score(self, label: str | None = None) -> float:
        return max((d.score for d in self.detections if label is None or d.label == label), default=0.0)

    def hits(self) -> list[Hit]:
        best: dict[str, float] = {}
        for d in self.detections:
            best[d.label] = max(best.get(d.label, 0.0), d.score)
        return [Hit(self.frame_no, self.timestamp_s, label, score) for label, score in best.items()]


@dataclass
class VideoResult:
    """Everything found in one video. ``frame_data`` lists only frames with at least one detection."""

    video_file: str
    fps: float
    width: int
    height: int
    duration_s: float
    frames_total: int
    frames_processed: int
    model: dict
    labels: list[str] | None
    min_score: float | dict
    sample_fps: float | None
    frame_data: list[FrameDetections] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    views: list[str] = field(default_factory=lambda: ["full"])  # which views of each frame the model saw
    # where every frame was examined, the views after the first ran on about this many frames a second (None: every
    # frame)
    multiscale_fps: float | None = None
    scan: dict | None = (
        None  # coarse-to-fine scan (clockwork.timeline.scan): the coarse rate and the windows seen at every frame
    )
    # what the container claims that a cut-short file would fail: {"checked_against": "frames listed" | "segment size" |
    # "none", "claimed": n | None}; "none" (MPEG-TS) says no truncation could be checked
    completeness: dict | None = None

    @property
    def clock_frames(self) -> int:
        return sum(1 for f in self.frame_data if any(d.label == CLOCK_LABEL for d in f.detections))

    @property
    def has_clock(self) -> bool:
        return self.clock_frames > 0

    @property
    def segment_fps(self) -> float:
        return segment_fps(self.fps, self.sample_fps)

    def clock_time_between(self, start_s: float, end_s: float, label: str = CLOCK_LABEL) -> ClockTime | None:
        """The time the clock shows at ``start_s``, fused from the readings of ``label`` detections in
        [start_s, end_s] (``clockwork.timeread.clocktime.fuse``); None when none was read."""
        from clockwork.timeread.clocktime import fuse

        readings = [
            (f.timestamp_s, d.clock_time)
            for f in self.frame_data
            if start_s - 1e-6 <= f.timestamp_s <= end_s + 1e-6
            for d in f.detections
            if d.label == label and d.clock_time is not None
        ]
        fused = fuse(readings)
        if fused is None:
            return None
        drift = (readings[0][0] - start_s) / 60.0 if readings else 0.0  # fused at the first reading: back to start_s
        return ClockTime(int(round(fused.minutes - drift)) % 720, fused.confidence, fused.readable)

    def build_segments(
        self, rules: SegmentRules = SegmentRules(), *, label: str | None = None, min_score: float = 0.0
    ) -> list[Segment]:
        """Segments from this result's frames under ``rules``: the same rule the detection run used."""
        hits = [
            h for f in self.frame_data for h in f.hits() if (label is None or h.label == label) and h.score >= min_score
        ]
        return build_segments(hits, fps=self.segment_fps, duration_s=self.duration_s, rules=rules)

    @classmethod
    def from_json(cls, d: dict) -> VideoResult:
        if d.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"result schema_version {d.get('schema_version')!r} is not {SCHEMA_VERSION}")
        return cls(
            video_file=d["video_file"],
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
            duration_s=float(d["duration_s"]),
            frames_total=int(d["frames_total"]),
            frames_processed=int(d["frames_processed"]),
            model=d.get("model") or {},
            labels=d.get("labels"),
            min_score=d.get("min_score"),
            sample_fps=d.get("sample_fps"),
            frame_data=[FrameDetections.from_json(f) for f in d.get("frame_data", [])],
            segments=[Segment.from_json(s) for s in d.get("segments", [])],
            views=list(d.get("views", ["full"])),
            multiscale_fps=d.get("multiscale_fps"),
            scan=d.get("scan"),
            completeness=d.get("completeness"),
        )

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "video_file": self.video_file,
            "fps": round(self.fps, 4),
            "has_clock": self.has_clock,
            "clock_frames": self.clock_frames,
            "frames_total": self.frames_total,
            "frames_processed": self.frames_processed,
            "duration_s": round(self.duration_s, 3),
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "labels": self.labels,
            "min_score": self.min_score,
            "sample_fps": self.sample_fps,
            "views": list(self.views),
            "multiscale_fps": self.multiscale_fps,
            "scan": self.scan,
            "completeness": self.completeness,
            "segments": [s.to_json() for s in self.segments],
            "frame_data": [f.to_json() for f in self.frame_data],
        }
