"""Where a video becomes a result: frames (``FrameReader``) -> detections (``Detector``) -> segments.

``detect_video`` is the in-process path; ``jobs.split`` calls it, on the GPU where the task has one.
The Serve detector reuses the same pieces (:class:`~clockwork.frames.FrameReader`,
:class:`ResultBuilder`, :func:`prefetch`) around its batching across requests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from clockwork.clocktime import MINUTES, ClockTime, fuse
from clockwork.decode import SampleGrid, VideoInfo, check_complete
from clockwork.result import Detection, FrameDetections, VideoResult
from clockwork.scan import coarse_fps, refine_windows, resolve_mode, scan_record
from clockwork.segments import Hit, Segment, SegmentRules, build_segments, segment_fps
from clockwork.settings import CLOCK_LABEL, DETECT
from clockwork.views import parse_views, view_stride

if TYPE_CHECKING:
    from clockwork.detector import Detector, Thresholds
    from clockwork.reader import ClockReader

T = TypeVar("T")

# (video seconds done, video seconds in this stage, stage): a stage's total is fixed when it starts
ProgressFn = Callable[[float, float, str], None]
STAGE_COARSE, STAGE_REFINE, STAGE_EVERY, STAGE_SAMPLED = "scan", "refine", "every frame", "sampled"
UNSAID = object()  # detect_video's sample_fps when the caller names none


def hold_thresholds(min_score: Thresholds) -> Thresholds:
    """The lower, hysteresis threshold the detector is run at: ``DETECT.hold_ratio`` x ``min_score``."""
    if isinstance(min_score, Mapping):
        return {label: float(v) * DETECT.hold_ratio for label, v in min_score.items()}
    return float(min_score) * DETECT.hold_ratio


class ResultBuilder:
    """Accumulates per-frame detections of one video and builds its :class:`VideoResult`.

    Detectors run at :attr:`detect_threshold` (the lower, hysteresis threshold). Detections at or above
    ``min_score`` are the result's ``frame_data``; the weaker ones only carry a segment on (hysteresis).
    ``build`` links detections across frames into tracks by IoU and names each segment's track.
    """

    def __init__(self, info: VideoInfo, *, model: dict, labels: Sequence[str] | None, min_score: Thresholds,
                 sample_fps: float | None, rules: SegmentRules = SegmentRules(), views: Sequence[str] = DETECT.views,
                 multiscale_fps: float | None = DETECT.multiscale_fps):
        self.info = info
        self.model = model
        self.labels = list(labels) if labels is not None else None
        self.min_score = dict(min_score) if isinstance(min_score, Mapping) else float(min_score)
        self.sample_fps = sample_fps
        self.rules = rules
        self.views = list(views)
        self.multiscale_fps = multiscale_fps or None
        self.frames: list[FrameDetections] = []
        self.weak: list[Hit] = []
        self.processed = 0
        self._scan: tuple[float, list[tuple[float, float]], int] | None = None  # (coarse rate, windows, frames before them)
        self._seen: set[int] = set()  # frame numbers with detections: a refined window re-examines a coarse frame

    @property
    def detect_threshold(self) -> Thresholds:
        return hold_thresholds(self.min_score)

    def _threshold(self, label: str) -> float:
        if isinstance(self.min_score, dict):
            return float(self.min_score.get(label, self.min_score.get("*", DETECT.min_score)))
        return self.min_score

    def add(self, frames: Iterable[FrameDetections]) -> None:
        for f in frames:
            self.add_frame(f.frame_no, f.timestamp_s, f.detections)

    def add_frame(self, frame_no: int, timestamp_s: float, detections: Sequence[Detection]) -> None:
        self.processed += 1
        if frame_no in self._seen:
            return
        if detections:
            self._seen.add(frame_no)
        strong = [d for d in detections if d.score >= self._threshold(d.label)]
        if strong:
            self.frames.append(FrameDetections(frame_no, timestamp_s, strong))
        weak: dict[str, float] = {}
        for d in detections:
            if d.score < self._threshold(d.label):
                weak[d.label] = max(weak.get(d.label, 0.0), d.score)
        self.weak += [Hit(frame_no, timestamp_s, label, score, strong=False) for label, score in weak.items()
                      if not any(x.label == label for x in strong)]

    def scan_windows(self, coarse: float, duration_s: float | None = None) -> list[tuple[float, float]]:
        """After a scan's coarse pass at ``coarse`` frames a second: the time ranges to examine at every frame
        (``clockwork.scan.refine_windows``). The result's ``scan`` field records them and what each pass saw."""
        states = [(f.timestamp_s, d.label, 2) for f in self.frames for d in f.detections]
        states += [(h.timestamp_s, h.label, 1) for h in self.weak]
        windows = refine_windows(states, step_s=1.0 / coarse, frame_s=1.0 / (self.info.fps or 30.0),
                                 duration_s=self.info.duration_s if duration_s is None else duration_s)
        self._scan = (coarse, windows, self.processed)
        return windows

    def build(self, frames_decoded: int | None = None) -> VideoResult:
        info = self.info
        frames_total = frames_decoded or info.frames_total
        frames = drop_unreadable_tracks(link_tracks(sorted(self.frames, key=lambda f: f.frame_no)))
        hits = [h for f in frames for h in f.hits()] + self.weak
        segments = build_segments(hits, fps=segment_fps(info.fps, self.sample_fps), duration_s=info.duration_s,
                                  rules=self.rules)
        segments = [_with_reading(replace(seg, track=_main_track(frames, seg)), frames) for seg in segments]
        return VideoResult(
            video_file=Path(info.path).name, fps=info.fps, width=info.width, height=info.height,
            duration_s=info.duration_s, frames_total=frames_total, frames_processed=self.processed,
            model=self.model, labels=self.labels, min_score=self.min_score, sample_fps=self.sample_fps, views=self.views,
            multiscale_fps=self.multiscale_fps if len(self.views) > 1 and not self.sample_fps else None, frame_data=frames, segments=segments,
            scan=scan_record(*self._scan, self.processed - self._scan[2]) if self._scan else None,
        )


def read_clocks(reader: ClockReader, batch, found: list[FrameDetections], grid: SampleGrid, *,
                min_score: Thresholds = DETECT.min_score) -> list[FrameDetections]:
    """Read the dial of every clock detection (at or above ``min_score``) in the frames that pass ``grid``
    (the first frame with a clock at or after each tick), in one batch; the others pass through."""
    from clockwork.reader import crop_box

    todo = [(k, f) for k, f in enumerate(found)
            if any(d.label == CLOCK_LABEL for d in f.detections) and grid.keep(f.timestamp_s)]
    if not todo:
        return found
    threshold = min_score.get(CLOCK_LABEL, DETECT.min_score) if isinstance(min_score, Mapping) else min_score
    crops, where = [], []
    for k, f in todo:
        image = batch.data[k]  # on the GPU, crop_box copies only the part it crops
        for j, d in enumerate(f.detections):
            if d.label == CLOCK_LABEL and d.score >= threshold:
                crops.append(crop_box(image, (d.x, d.y, d.w, d.h)))
                where.append((k, j))
    readings = reader.read(crops)
    out = list(found)
    for (k, j), reading in zip(where, readings, strict=True):
        dets = list(out[k].detections)
        dets[j] = replace(dets[j], clock_time=reading)
        out[k] = FrameDetections(out[k].frame_no, out[k].timestamp_s, dets)
    return out


def link_tracks(frames: list[FrameDetections], *, min_iou: float = DETECT.track_iou) -> list[FrameDetections]:
    """Give every detection a track id: in frame order, a detection joins the live track of its label whose
    box, moved on at the track's last velocity to this frame's time, overlaps it most (IoU >= ``min_iou``; one
    detection per track and frame), or starts a new one. The prediction keeps a moving clock one track across
    a scan's coarse steps, where frames are half a second apart."""
    last: list[tuple[Detection, float, float, float]] = []  # per track: last box, its time, velocity x and y (px/s)
    out = []
    for f in frames:
        taken: set[int] = set()
        linked = []
        for d in sorted(f.detections, key=lambda d: -d.score):
            candidates = [(t, max(_iou(box, d), _iou(_moved(box, vx * (f.timestamp_s - at), vy * (f.timestamp_s - at)), d)))
                          for t, (box, at, vx, vy) in enumerate(last) if t not in taken and box.label == d.label]
            tid, iou = max(candidates, key=lambda c: c[1], default=(None, 0.0))
            if tid is None or iou < min_iou:
                tid = len(last)
                last.append((d, f.timestamp_s, 0.0, 0.0))
            else:
                box, at, _, _ = last[tid]
                dt = f.timestamp_s - at
                velocity = ((d.x + d.w / 2 - box.x - box.w / 2) / dt, (d.y + d.h / 2 - box.y - box.h / 2) / dt) if dt > 0 else (0.0, 0.0)
                last[tid] = (d, f.timestamp_s, *velocity)
            taken.add(tid)
            linked.append(replace(d, track=tid))
        out.append(FrameDetections(f.frame_no, f.timestamp_s, linked))
    return out


def _moved(box: Detection, dx: float, dy: float) -> Detection:
    return replace(box, x=box.x + dx, y=box.y + dy)


def drop_unreadable_tracks(frames: list[FrameDetections], threshold: float = DETECT.readable_threshold) -> list[FrameDetections]:
    """Without the clocks whose dial was read and never found readable: a clock track with at least one reading
    (``read_time``) none of which reaches ``threshold`` loses its detections, so it makes no segment. Emblems, moons
    and wheels that a detector takes for clocks read as unreadable (docs/DETECTOR.md); a track never read is kept."""
    read: dict[int, bool] = {}  # track -> whether any reading of it was readable
    for f in frames:
        for d in f.detections:
            if d.clock_time is not None and d.track is not None:
                read[d.track] = read.get(d.track, False) or d.clock_time.readable >= threshold
    unreadable = {t for t, ok in read.items() if not ok}
    if not unreadable:
        return frames
    out = []
    for f in frames:
        kept = [d for d in f.detections if d.track not in unreadable]
        if kept:
            out.append(FrameDetections(f.frame_no, f.timestamp_s, kept))
    return out


def _iou(a: Detection, b: Detection) -> float:
    iw = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    ih = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = iw * ih
    return inter / (a.w * a.h + b.w * b.h - inter + 1e-9)


def _with_reading(seg: Segment, frames: list[FrameDetections]) -> Segment:
    """The segment's clock read once: every reading of its track, fused (``clocktime.fuse``: the hand moves
    on while the clip plays), moved back to the segment's start."""
    readings = [(f.timestamp_s, d.clock_time) for f in frames if seg.start_frame <= f.frame_no <= seg.end_frame
                for d in f.detections if d.clock_time is not None and d.track == seg.track]
    fused = fuse(readings)
    if fused is None:
        return seg
    first = next(t for t, r in readings if r.readable >= DETECT.readable_threshold)
    at_start = int(round(fused.minutes - (first - seg.start_s) / 60.0)) % MINUTES
    return replace(seg, clock_time=ClockTime(at_start, fused.confidence, fused.readable))


def _main_track(frames: list[FrameDetections], seg: Segment) -> int | None:
    counts: dict[int, int] = {}
    for f in frames:
        if seg.start_frame <= f.frame_no <= seg.end_frame:
            for d in f.detections:
                if d.label == seg.label and d.track is not None:
                    counts[d.track] = counts.get(d.track, 0) + 1
    return max(counts, key=lambda t: (counts[t], -t)) if counts else None


class Prefetch(Generic[T]):
    """``items`` produced by a background thread, ``depth`` ahead. ``get()`` returns the next item, or None at the
    end (the producer's exception re-raises there). ``close()`` may be called from any thread, also while another
    thread waits in ``get()`` (which then returns None): it stops the producer after the item it is making and
    waits for it, so whatever the items come from (a decoder) can be closed next. Closing twice is safe."""

    _END = object()

    def __init__(self, items: Iterable[T], depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(iter(items),), name="clockwork-prefetch", daemon=True)
        self._thread.start()

    def _work(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consumer
            self._put((self._END, exc))

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> T | None:
        item, exc = self._q.get()
        if item is self._END:
            self._q.put((self._END, None))  # every later get() ends too
            if exc is not None:
                raise exc
            return None
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        while True:  # what the producer made, dropped; then the end for a get() that waits
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._q.put((self._END, None))

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a background thread, ``depth`` ahead; exceptions re-raise in the caller."""
    with Prefetch(items, depth) as ahead:
        while (item := ahead.get()) is not None:
            yield item


def detect_video(
    path: str | Path,
    *,
    labels: Sequence[str] | None = DETECT.labels,
    min_score: Thresholds = DETECT.min_score,
    sample_fps: float | None | object = UNSAID,
    detector: Detector | None = None,
    batch_size: int | None = None,
    rules: SegmentRules = SegmentRules(),
    views: Sequence[str] = DETECT.views,
    read_time: bool = DETECT.read_time,
    clock_reader: ClockReader | None = None,
    progress: ProgressFn | None = None,
    scan: bool | None = None,
    multiscale_fps: float | None = DETECT.multiscale_fps,
) -> VideoResult:
    """Find ``labels`` (all classes when None) in every frame of ``path`` (or ``sample_fps`` frames a second).

    Frames are decoded where the detector runs: with NVDEC on a GPU where the file allows it. Each frame is
    seen through ``views`` (``clockwork.views``) and their boxes are merged. With ``read_time`` the clocks'
    dials are read ``DETECT.read_fps`` times a second (``clockwork.reader``), each segment gets one
    fused reading of its tracked clock, and a clock never readable makes no segment (``drop_unreadable_tracks``).

    By default it scans (``clockwork.scan``): a few frames a second, and every frame around the places where a
    label appears or disappears. Naming ``sample_fps`` (None: every frame) detects at that rate instead;
    ``scan=False`` alone detects at ``DETECT.sample_fps``. Where every frame is examined, the views after the
    first run on ``multiscale_fps`` frames a second (``clockwork.views.view_stride``; None: every frame)."""
    from clockwork.detector import Detector
    from clockwork.frames import FrameReader

    detector = detector or Detector()
    if read_time and clock_reader is None:
        from clockwork.reader import shared_reader

        clock_reader = shared_reader(str(detector.device))
    read_grid = SampleGrid(DETECT.read_fps) if read_time else None
    detector.label_ids(labels)  # reject bad arguments before decoding anything
    views = parse_views(views)
    view_stride(None, None, multiscale_fps)  # a bad rate is refused before decoding too

    def run(reader: FrameReader, builder: ResultBuilder, grid: SampleGrid | None, stage: tuple[str, float, float, float]) -> None:
        """Detect every frame ``reader`` gives; ``stage``: its name, total video seconds, seconds done before
        this reader, and where this reader starts."""
        name, total_s, before_s, start_s = stage
        stride = view_stride(reader.info.fps, reader.sample_fps, multiscale_fps)
        frame_s = 1.0 / reader.info.fps if reader.info.fps else 0.0
        span_s = max((reader.end_s if reader.end_s is not None else info.duration_s) - start_s, 0.0)
        for batch in prefetch(reader):
            found = detector.detect_batch(batch, min_score=builder.detect_threshold, labels=labels, views=views, stride=stride)
            if grid is not None:
                found = read_clocks(clock_reader, batch, found, grid, min_score=builder.min_score)
            builder.add(found)
            if progress:
                progress(min(before_s + min(max(batch.timestamps[-1] + frame_s - start_s, 0.0), span_s), total_s), total_s, name)
        if progress:
            progress(min(before_s + span_s, total_s), total_s, name)

    scan, sample_fps = resolve_mode(scan, None if sample_fps is UNSAID else (sample_fps or 0))
    coarse = info = None
    if scan:
        from clockwork.decode import probe

        info = probe(path)  # the coarse rate follows the video's; the reader then reuses this probe
        coarse = coarse_fps(info.fps, rules.gap_s)
    with FrameReader(path, device=detector.device, sample_fps=coarse or sample_fps, batch_size=batch_size, info=info) as reader:
        info = reader.info
        checked_against, claimed = check_complete(path, info)  # a file cut short fails before decoding
        builder = ResultBuilder(info, model=detector.model_info, labels=labels, min_score=min_score,
                                sample_fps=sample_fps, rules=rules, views=views, multiscale_fps=multiscale_fps)
        stage = STAGE_COARSE if coarse else STAGE_SAMPLED if sample_fps else STAGE_EVERY
        run(reader, builder, read_grid, (stage, info.duration_s, 0.0, 0.0))
        decoded = reader.frames_decoded
    if coarse:
        windows = builder.scan_windows(coarse)
        total_s, done_s = sum(b - a for a, b in windows), 0.0
        for a, b in windows:  # read there too: a track the coarse pass saw only below min_score was never read
            with FrameReader(path, device=detector.device, start_s=a, end_s=b, batch_size=batch_size, info=info) as reader:
                run(reader, builder, SampleGrid(DETECT.read_fps, a) if read_time else None, (STAGE_REFINE, total_s, done_s, a))
            done_s += b - a
    return replace(builder.build(decoded), completeness={"checked_against": checked_against, "claimed": claimed})
