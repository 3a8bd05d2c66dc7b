"""The detection result: one JSON document, returned by ``detect_video`` and posted back by the API.

It keeps the original inference API's fields (``video_file``, ``fps``, ``has_clock``,
``clock_frames``, ``frame_data``) with corrected meanings (``x, y`` top-left, ``w, h`` width and
height in source pixels), and adds scores, labels, timestamps and segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clockwork.detector import Detection
from clockwork.segments import Hit, Segment

SCHEMA_VERSION = 1


@dataclass
class FrameDetections:
    frame_no: int
    timestamp_s: float
    detections: list[Detection]

    def to_json(self) -> dict:
        return {"frame_no": self.frame_no, "timestamp_s": round(self.timestamp_s, 6),
                "detections": [d.to_json() for d in self.detections]}

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

    @property
    def clock_frames(self) -> int:
        return sum(1 for f in self.frame_data if any(d.label == "clock" for d in f.detections))

    @property
    def has_clock(self) -> bool:
        return self.clock_frames > 0

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
            "segments": [s.to_json() for s in self.segments],
            "frame_data": [f.to_json() for f in self.frame_data],
        }
