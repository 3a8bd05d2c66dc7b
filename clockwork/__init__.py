"""Clockwork: find objects (clocks first) in video libraries and cut them into remixes.

The public surface::

    from clockwork import detect_video, Detector
    result = detect_video("film.mp4", labels=["clock"], min_score=0.5)
    result.to_json()
"""

from clockwork.decode import Frame, VideoDecoder, VideoInfo, probe
from clockwork.detector import Detection, Detector
from clockwork.errors import (
    ClockworkError,
    CorruptVideoError,
    FFmpegError,
    ModelError,
    NoVideoStreamError,
    NotAVideoError,
    VideoError,
    VideoNotFoundError,
)
from clockwork.pipeline import ResultBuilder, detect_video
from clockwork.result import FrameDetections, VideoResult
from clockwork.segments import Segment, SegmentRules, build_segments

__all__ = [
    "ClockworkError", "CorruptVideoError", "Detection", "Detector", "FFmpegError", "Frame", "FrameDetections",
    "ModelError", "NoVideoStreamError", "NotAVideoError", "ResultBuilder", "Segment", "SegmentRules",
    "VideoDecoder", "VideoError", "VideoInfo", "VideoNotFoundError", "VideoResult", "build_segments",
    "detect_video", "probe",
]
