"""Clockwork: find objects (clocks first) in video libraries and cut them into remixes.

The public surface::

    from clockwork import detect_video, Detector
    result = detect_video("film.mp4")  # clocks, at the defaults of clockwork.settings
    result.to_json()

Where things happen, in order: ``frames.py`` (a video becomes batches of frames, NVDEC or CPU),
``detector.py`` (frames become detections), ``result.py`` (the detection types and the result JSON),
``segments.py`` (detections become segments), ``clips.py`` and ``remix.py`` (segments become clips,
clips a remix). ``settings.py`` holds every default and every environment variable.

Names are imported on first use (PEP 562), so ``import clockwork.errors`` or a job that needs no model
does not load torch.
"""

from __future__ import annotations

import importlib


def version() -> str:
    """The installed package's version ("0" when run from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("clockwork")
    except PackageNotFoundError:
        return "0"


_EXPORTS = {
    "ClockworkError": "clockwork.errors",
    "CorruptVideoError": "clockwork.errors",
    "FFmpegError": "clockwork.errors",
    "ModelError": "clockwork.errors",
    "NoVideoStreamError": "clockwork.errors",
    "NotAVideoError": "clockwork.errors",
    "VideoError": "clockwork.errors",
    "VideoNotFoundError": "clockwork.errors",
    "Frame": "clockwork.video.decode",
    "VideoDecoder": "clockwork.video.decode",
    "VideoInfo": "clockwork.video.decode",
    "probe": "clockwork.video.decode",
    "FrameBatch": "clockwork.video.frames",
    "FrameReader": "clockwork.video.frames",
    "Detector": "clockwork.detect.detector",
    "Detection": "clockwork.timeline.result",
    "FrameDetections": "clockwork.timeline.result",
    "VideoResult": "clockwork.timeline.result",
    "ResultBuilder": "clockwork.timeline.pipeline",
    "detect_video": "clockwork.timeline.pipeline",
    "Segment": "clockwork.timeline.segments",
    "SegmentRules": "clockwork.timeline.segments",
    "build_segments": "clockwork.timeline.segments",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clockwork' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
