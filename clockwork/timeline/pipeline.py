"""Where a video becomes a result: frames (``FrameReader``) -> detections (``Detector``) -> segments.

``detect_frames`` is the one decode -> detect -> read loop over a reader; ``first_pass`` and ``refine_pass`` plan
what is examined (a scan's coarse pass, then its windows); :class:`ResultBuilder` turns detections into a result.
``detect_video`` puts them together in process (the CLI, ``jobs.split``); the Serve detector runs ``detect_frames``
on each chunk with its batching across requests, and the API's runner plans the passes as chunks.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from clockwork.settings import CLOCK_LABEL, DETECT
from clockwork.timeline.options import DetectOptions
from clockwork.timeline.result import Detection, FrameDetections, VideoResult
from clockwork.timeline.scan import coarse_fps, refine_windows, scan_record
from clockwork.timeline.segments import Hit, Segment, SegmentRules, build_segments, segment_fps
from clockwork.timeread.clocktime import MINUTES, ClockTime, fuse
from clockwork.video.decode import SampleGrid, VideoInfo, check_complete
from clockwork.video.views import view_stride

if TYPE_CHECKING:
    from clockwork.detect.detector import Detector, Thresholds
    from clockwork.timeread.reader import ClockReader
    from clockwork.video.frames import FrameBatch, FrameReader

T = TypeVar("T")

# (video seconds done, video seconds in this stage, stage): a stage's total is fixed when it starts
ProgressFn = Callable[[float, float, str], None]
STAGE_COARSE, STAGE_REFINE, STAGE_EVERY, STAGE_SAMPLED = "scan", "refine", "every frame", "sampled"


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

    def __init__(
        self,
        info: VideoInfo,
        *,
        model: dict,
        labels: Sequence[str] | None,
        min_score: Thresholds,
        sample_fps: float | None,
        rules: SegmentRules = SegmentRules(),
        views: Sequence[str] = DETECT.views,
        multiscale_fps: float | None = DETECT.multiscale_fps,
    ):
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
        self._scan: tuple[float, list[tuple[float, float]], int] | None = (
            None  # (coarse rate, windows, frames before them)
        )
        self._seen: set[int] = set()  # frame numbers with detections: a refined window re-examines a coarse frame

    @classmethod
    def for_options(
        cls, info: VideoInfo, options: DetectOptions, *, model: dict, rules: SegmentRules = SegmentRules()
    ) -> ResultBuilder:
        return cls(
            info,
            model=model,
            labels=options.labels,
            min_score=options.min_score,
            sample_fps=options.sample_fps,
            rules=rules,
            views=options.views,
            multiscale_fps=options.multiscale_fps,
        )

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
        self.weak += [
            Hit(frame_no, timestamp_s, label, score, strong=False)
            for label, score in weak.items()
            if not any(x.label == label for x in strong)
        ]

    def scan_windows(self, coarse: float, duration_s: float | None = None) -> list[tuple[float, float]]:
        """After a scan's coarse pass at ``coarse`` frames a second: the time ranges to examine at every frame
        (``clockwork.timeline.scan.refine_windows``). The result's ``scan`` field records them and what each pass
        saw."""
        states = [(f.timestamp_s, d.label, 2) for f in self.frames for d in f.detections]
        states += [(h.timestamp_s, h.label, 1) for h in self.weak]
        windows = refine_windows(
            states,
            step_s=1.0 / coarse,
            frame_s=1.0 / (self.info.fps or 30.0),
            duration_s=self.info.duration_s if duration_s is None else duration_s,
        )
        self._scan = (coarse, windows, self.processed)
        return windows

    def build(self, frames_decoded: int | None = None) -> VideoResult:
        info = self.info
        frames_total = frames_decoded or info.frames_total
        frames = drop_unreadable_tracks(link_tracks(sorted(self.frames, key=lambda f: f.frame_no)))
        hits = [h for f in frames for h in f.hits()] + self.weak
        segments = build_segments(
            hits, fps=segment_fps(info.fps, self.sample_fps), duration_s=info.duration_s, rules=self.rules
        )
        segments = [_with_reading(replace(seg, track=_main_track(frames, seg)), frames) for seg in segments]
        return VideoResult(
            video_file=Path(info.path).name,
            fps=info.fps,
            width=info.width,
            height=info.height,
            duration_s=info.duration_s,
            frames_total=frames_total,
            frames_processed=self.processed,
            model=self.model,
            labels=self.labels,
            min_score=self.min_score,
            sample_fps=self.sample_fps,
            views=self.views,
            multiscale_fps=self.multiscale_fps if len(self.views) > 1 and not self.sample_fps else None,
            frame_data=frames,
            segments=segments,
            scan=scan_record(*self._scan, self.processed - self._scan[2]) if self._scan else None,
        )


def read_clocks(
    reader: ClockReader,
    batch,
    found: list[FrameDetections],
    grid: SampleGrid,
    *,
    min_score: Thresholds = DETECT.min_score,
) -> list[FrameDetections]:
    """Read the dial of every clock detection (at or above ``min_score``) in the frames that pass ``grid``
    (the first frame with a clock at or after each tick), in one batch; the others pass through."""
    from clockwork.timeread.reader import crop_box

    todo = [
        (k, f)
        for k, f in enumerate(found)
        if any(d.label == CLOCK_LABEL for d in f.detections) and grid.keep(f.timestamp_s)
    ]
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
            candidates = [
                (t, max(_iou(box, d), _iou(_moved(box, vx * (f.timestamp_s - at), vy * (f.timestamp_s - at)), d)))
                for t, (box, at, vx, vy) in enumerate(last)
                if t not in taken and box.label == d.label
            ]
            tid, iou = max(candidates, key=lambda c: c[1], default=(None, 0.0))
            if tid is None or iou < min_iou:
                tid = len(last)
                last.append((d, f.timestamp_s, 0.0, 0.0))
            else:
                box, at, _, _ = last[tid]
                dt = f.timestamp_s - at
                velocity = (
                    ((d.x + d.w / 2 - box.x - box.w / 2) / dt, (d.y + d.h / 2 - box.y - box.h / 2) / dt)
                    if dt > 0
                    else (0.0, 0.0)
                )
                last[tid] = (d, f.timestamp_s, *velocity)
            taken.add(tid)
            linked.append(replace(d, track=tid))
        out.append(FrameDetections(f.frame_no, f.timestamp_s, linked))
    return out


def _moved(box: Detection, dx: float, dy: float) -> Detection:
    return replace(box, x=box.x + dx, y=box.y + dy)


def drop_unreadable_tracks(
    frames: list[FrameDetections], threshold: float = DETECT.readable_threshold
) -> list[FrameDetections]:
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
    readings = [
        (f.timestamp_s, d.clock_time)
        for f in frames
        if seg.start_frame <= f.frame_no <= seg.end_frame
        for d in f.detections
        if d.clock_time is not None and d.track == seg.track
    ]
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

    def __init__(self, items: Iterable[T], depth: int = 2, *, loop: asyncio.AbstractEventLoop | None = None):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._loop = loop  # where ``aget`` waits: told of each item, so no thread of the loop's pool waits for one
        self._ready = asyncio.Event() if loop is not None else None
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
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator stopped early closes what it holds (an inner Prefetch, a decoder)
                close()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(entry, timeout=0.05)
            except queue.Full:
                continue
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._ready.set)
                except RuntimeError:  # the loop has closed: nobody waits any more
                    pass
            return True
        return False

    async def aget(self) -> T | None:
        """``get`` for a coroutine on the ``loop`` given: it waits on the loop, holding no thread."""
        while True:
            try:
                return self._take(self._q.get_nowait())
            except queue.Empty:
                self._ready.clear()
                if self._q.empty():
                    await self._ready.wait()

    def get(self) -> T | None:
        return self._take(self._q.get())

    def _take(self, entry: tuple) -> T | None:
        item, exc = entry
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


@dataclass(frozen=True)
class Pass:
    """One pass over a video: its progress stage, the frames a second it examines (None: every frame), the time ranges
    it covers (``end`` None: to the end), and whether its decoded frames are the video's (a scan's windows decode some
    frames again)."""

    stage: str
    rate: float | None
    ranges: tuple[tuple[float, float | None], ...]
    counts: bool = True


def first_pass(options: DetectOptions, fps: float, rules: SegmentRules = SegmentRules()) -> Pass:
    """A scan's coarse pass (``clockwork.timeline.scan.coarse_fps``), or the whole sampled or every-frame pass."""
    if options.scan:
        return Pass(STAGE_COARSE, coarse_fps(fps, rules.gap_s), ((0.0, None),))
    return Pass(STAGE_SAMPLED if options.sample_fps else STAGE_EVERY, options.sample_fps, ((0.0, None),))


def refine_pass(first: Pass, builder: ResultBuilder, end_s: float | None = None) -> Pass | None:
    """After a scan's coarse pass: every frame of the windows around the changes it found; None after other passes.
    The windows read the dials too, so a track the coarse pass saw only below min_score is read and checked."""
    if first.stage != STAGE_COARSE or first.rate is None:
        return None
    windows = builder.scan_windows(first.rate, end_s)
    return Pass(STAGE_REFINE, None, tuple((a, b) for a, b in windows), counts=False)


Prepare = Callable[["FrameBatch", int], object]
Infer = Callable[["FrameBatch", object], Sequence[Sequence[Detection]]]


def detect_frames(
    reader: FrameReader,
    options: DetectOptions,
    *,
    prepare: Prepare,
    infer: Infer,
    clock_reader: ClockReader | None = None,
    depth: int = 2,
) -> Iterator[tuple[FrameBatch, list[FrameDetections]]]:
    """The one decode -> detect -> read loop, over one reader (a whole video or a chunk of it): each batch with its
    frames' detections. ``prepare(batch, stride)`` builds the model's views of a batch in the decoding thread, ``depth``
    batches ahead; ``infer(batch, prepared)`` gives each frame's detections at the hysteresis threshold (in process, or
    through the Serve detector's batching across requests). With ``options.read_time`` the clocks at or above
    ``min_score`` are read ``DETECT.read_fps`` times a second from the reader's start."""
    stride = view_stride(reader.info.fps, reader.sample_fps, options.multiscale_fps)
    grid = SampleGrid(DETECT.read_fps, reader.start_s) if options.read_time else None
    if grid is not None and clock_reader is None:
        raise ValueError("read_time needs a clock_reader")
    with Prefetch(((batch, prepare(batch, stride)) for batch in reader), depth) as ahead:
        while (item := ahead.get()) is not None:
            batch, prepared = item
            found = [
                FrameDetections(i, t, list(d))
                for i, t, d in zip(batch.indexes, batch.timestamps, infer(batch, prepared), strict=True)
            ]
            if grid is not None:
                found = read_clocks(clock_reader, batch, found, grid, min_score=options.min_score)
            yield batch, found


def in_process(detector: Detector, options: DetectOptions) -> tuple[Prepare, Infer]:
    """``detect_frames``'s two steps on a detector in this process (``Detector.detect_batch``'s halves)."""
    threshold = hold_thresholds(options.min_score)

    def prepare(batch, stride: int):
        return detector.prepare(batch, options.views, stride)

    def infer(batch, prepared):
        return detector.postprocess(
            detector.infer(detector.model_input(prepared)), prepared, min_score=threshold, labels=options.labels
        )

    return prepare, infer


def detect_video(
    path: str | Path,
    options: DetectOptions | None = None,
    *,
    detector: Detector | None = None,
    batch_size: int | None = None,
    rules: SegmentRules = SegmentRules(),
    clock_reader: ClockReader | None = None,
    progress: ProgressFn | None = None,
    **overrides,
) -> VideoResult:
    """Find clocks (``options.labels``) in ``path`` as ``options`` say
    (``clockwork.timeline.options.DetectOptions``; None: the
    defaults, a scan). Keyword ``overrides`` build the options instead (``scan``, ``sample_fps``, ``views``, ``labels``,
    ``min_score``, ``multiscale_fps``, ``read_time``; ``sample_fps=None`` is every frame, as in the result JSON).

    Frames are decoded where the detector runs: with NVDEC on a GPU where the file allows it. Each frame is seen
    through the views and their boxes are merged. With ``read_time`` the clocks' dials are read, each segment gets
    one fused reading of its tracked clock, and a clock never readable makes no segment (``drop_unreadable_tracks``).
    A scan detects a few frames a second, then every frame around the places where a label appears or disappears."""
    from clockwork.detect.detector import Detector
    from clockwork.video.frames import FrameReader

    if options is not None and overrides:
        raise TypeError("detect_video takes options or keyword overrides, not both")
    options = options or _options_from_keywords(overrides)
    detector = detector or Detector()
    detector.label_ids(options.labels)  # reject bad arguments before decoding anything
    if options.read_time and clock_reader is None:
        from clockwork.timeread.reader import shared_reader

        clock_reader = shared_reader(str(detector.device))
    prepare, infer = in_process(detector, options)

    def run(p: Pass, builder: ResultBuilder, info: VideoInfo) -> int:
        """Every range of the pass; progress in video seconds of the pass. Returns the frames decoded."""
        total_s = sum((b if b is not None else info.duration_s) - a for a, b in p.ranges)
        done_s, decoded, frame_s = 0.0, 0, 1.0 / info.fps if info.fps else 0.0
        for a, b in p.ranges:
            span_s = (b if b is not None else info.duration_s) - a
            with FrameReader(
                path, device=detector.device, sample_fps=p.rate, start_s=a, end_s=b, batch_size=batch_size, info=info
            ) as reader:
                for batch, found in detect_frames(
                    reader, options, prepare=prepare, infer=infer, clock_reader=clock_reader
                ):
                    builder.add(found)
                    if progress:
                        seen = min(max(batch.timestamps[-1] + frame_s - a, 0.0), span_s)
                        progress(min(done_s + seen, total_s), total_s, p.stage)
                decoded += reader.frames_decoded
            done_s += span_s
            if progress:
                progress(min(done_s, total_s), total_s, p.stage)
        return decoded

    from clockwork.video.decode import probe

    info = probe(path)
    checked_against, claimed = check_complete(path, info)  # a file cut short fails before decoding
    builder = ResultBuilder.for_options(info, options, model=detector.model_info, rules=rules)
    first = first_pass(options, info.fps, rules)
    decoded = run(first, builder, info)
    refine = refine_pass(first, builder)
    if refine is not None:
        run(refine, builder, info)
    return replace(builder.build(decoded), completeness={"checked_against": checked_against, "claimed": claimed})


def _options_from_keywords(keywords: dict) -> DetectOptions:
    """``detect_video``'s keywords as the result JSON spells them: ``sample_fps`` None (or 0) is every frame,
    ``multiscale_fps`` None (or 0) every view on every frame, ``labels`` None every class."""
    said = dict(keywords)
    for rate in ("sample_fps", "multiscale_fps"):
        if rate in said and said[rate] is None:
            said[rate] = 0
    every_class = "labels" in said and said["labels"] is None
    options = DetectOptions.resolve(**said)
    return replace(options, labels=None) if every_class else options
