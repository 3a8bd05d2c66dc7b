"""Where a video becomes a result: frames (``FrameReader``) -> detections (``Detector``) -> segments.

``detect_video`` is the in-process path; ``jobs.split`` calls it, on the GPU where the task has one.
The Serve detector reuses the same pieces (:class:`~clockwork.frames.FrameReader`,
:class:`ResultBuilder`, :func:`prefetch`) around its batching across requests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from clockwork.decode import VideoInfo
from clockwork.result import Detection, FrameDetections, VideoResult
from clockwork.segments import SegmentRules, build_segments, segment_fps
from clockwork.settings import DETECT
from clockwork.views import parse_views

if TYPE_CHECKING:
    from clockwork.detector import Detector, Thresholds

T = TypeVar("T")

ProgressFn = Callable[[int, int], None]  # (frames_done, frames_total)


class ResultBuilder:
    """Accumulates per-frame detections of one video and builds its :class:`VideoResult`."""

    def __init__(self, info: VideoInfo, *, model: dict, labels: Sequence[str] | None, min_score: Thresholds,
                 sample_fps: float | None, rules: SegmentRules = SegmentRules(), views: Sequence[str] = DETECT.views):
        self.info = info
        self.model = model
        self.labels = list(labels) if labels is not None else None
        self.min_score = dict(min_score) if isinstance(min_score, dict) else float(min_score)
        self.sample_fps = sample_fps
        self.rules = rules
        self.views = list(views)
        self.frames: list[FrameDetections] = []
        self.processed = 0
        self.frames_decoded = 0

    def add(self, frames: Iterable[FrameDetections]) -> None:
        for f in frames:
            self.add_frame(f.frame_no, f.timestamp_s, f.detections)

    def add_frame(self, frame_no: int, timestamp_s: float, detections: Sequence[Detection]) -> None:
        self.processed += 1
        if detections:
            self.frames.append(FrameDetections(frame_no, timestamp_s, list(detections)))

    def build(self, frames_decoded: int | None = None) -> VideoResult:
        info = self.info
        frames_total = frames_decoded or info.frames_total
        hits = [h for f in self.frames for h in f.hits()]
        segments = build_segments(hits, fps=segment_fps(info.fps, self.sample_fps), duration_s=info.duration_s,
                                  rules=self.rules)
        return VideoResult(
            video_file=Path(info.path).name, fps=info.fps, width=info.width, height=info.height,
            duration_s=info.duration_s, frames_total=frames_total, frames_processed=self.processed,
            model=self.model, labels=self.labels, min_score=self.min_score, sample_fps=self.sample_fps, views=self.views,
            frame_data=sorted(self.frames, key=lambda f: f.frame_no), segments=segments,
        )


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a background thread, ``depth`` ahead; exceptions re-raise in the caller."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    thread = threading.Thread(target=work, name="clockwork-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def detect_video(
    path: str | Path,
    *,
    labels: Sequence[str] | None = DETECT.labels,
    min_score: Thresholds = DETECT.min_score,
    sample_fps: float | None = DETECT.sample_fps,
    detector: Detector | None = None,
    batch_size: int | None = None,
    rules: SegmentRules = SegmentRules(),
    views: Sequence[str] = DETECT.views,
    progress: ProgressFn | None = None,
) -> VideoResult:
    """Find ``labels`` (all classes when None) in every frame of ``path`` (or ``sample_fps`` frames a second).

    Frames are decoded where the detector runs: with NVDEC on a GPU where the file allows it. Each frame is
    seen through ``views`` (``clockwork.views``) and their boxes are merged."""
    from clockwork.detector import Detector
    from clockwork.frames import FrameReader

    detector = detector or Detector()
    detector.label_ids(labels)  # reject bad arguments before decoding anything
    views = parse_views(views)
    with FrameReader(path, device=detector.device, sample_fps=sample_fps, batch_size=batch_size) as reader:
        builder = ResultBuilder(reader.info, model=detector.model_info, labels=labels, min_score=min_score,
                                sample_fps=sample_fps, rules=rules, views=views)
        total = reader.info.frames_total
        for batch in prefetch(reader):
            builder.add(detector.detect_batch(batch, min_score=min_score, labels=labels, views=views))
            if progress:
                progress(batch.indexes[-1] + 1, total)
        return builder.build(reader.frames_decoded)
