"""Frames out of a video on the CPU: RGB arrays with their true presentation timestamps.

PyAV (FFmpeg's libraries) was chosen over ``cv2.VideoCapture`` by measurement and by need
(``python -m bench.cpu``; figures in docs/records/): it gives each frame's own timestamp, so
variable-frame-rate files give true times; it exposes the display matrix, so rotation is honoured
explicitly; and it raises FFmpeg's own errors, which we turn into typed ones.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from clockwork._logging import logger
from clockwork.errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoNotFoundError,
    VideoTooLargeError,
)
from clockwork.settings import LIMITS

# Container signatures: a file that starts like a video but will not open is corrupt, not "not a video".
_SIGNATURES = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"\x47"), (4, b"moov"), (4, b"mdat"))


class SampleGrid:
    """Frame sampling: keeps the first frame at or after each tick of a ``sample_fps`` grid anchored
    at 0 s, so chunks of one video sample exactly as the whole video would. No rate keeps everything."""

    def __init__(self, sample_fps: float | None, start_s: float = 0.0):
        self.step = 1.0 / sample_fps if sample_fps else None
        self.next_t = math.ceil(start_s / self.step - 1e-6) * self.step if self.step else None

    def keep(self, t: float) -> bool:
        if self.step is None:
            return True
        if t + 1e-6 < self.next_t:
            return False
        while self.next_t <= t + 1e-6:
            self.next_t += self.step
        return True


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as displayed: ``width``/``height`` are after rotation."""

    path: str
    width: int
    height: int
    fps: float
    frames_total: int
    duration_s: float
    codec: str
    rotation: int
    has_audio: bool
    frames_listed: int = 0  # frames the container's index lists (0: it lists none, frames_total is estimated)


@dataclass
class Frame:
    """One decoded frame. ``index`` counts every decoded frame from 0, sampled or not."""

    index: int
    timestamp_s: float
    image: np.ndarray  # H x W x 3, uint8, RGB

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image must be HxWx3 uint8 RGB, got shape {self.image.shape} dtype {self.image.dtype}"
            )
        if self.index < 0:
            raise ValueError(f"Frame.index must be >= 0, got {self.index}")

    def __repr__(self):
        shape = "x".join(map(str, self.image.shape))
        return f"Frame(index={self.index}, timestamp_s={self.timestamp_s:.3f}, image=<{shape} uint8>)"


def _looks_like_video(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[off : off + len(sig)] == sig for off, sig in _SIGNATURES)


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoNotFoundError(path, "no such file")
    if not path.is_file():
        raise NotAVideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise NotAVideoError(path, "empty file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        reason = f"FFmpeg could not open it ({exc.strerror or exc})"
        if _looks_like_video(path):
            raise CorruptVideoError(path, reason) from None
        raise NotAVideoError(path, reason) from None


# FFmpeg's demuxers of single pictures (image2 reads numbered stills too; *_pipe: png_pipe, jpeg_pipe, webp_pipe, ...)
STILL_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})


def _info(path: Path, container: av.container.InputContainer, max_pixels: int | None = None) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        if not container.streams.audio:  # FFmpeg guessed some text or data format: not a video at all
            raise NotAVideoError(path, f"FFmpeg found no audio or video in it (streams: {', '.join(kinds) or 'none'})")
        raise NoVideoStreamError(path, f"the file has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if container.format.name in STILL_IMAGE_FORMATS or container.format.name.endswith("_pipe"):
        raise NotAVideoError(path, f"a still image ({container.format.name}), not a video")
    cc = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    frames = stream.frames or (int(round(duration * fps)) if fps else 0)
    rotation = 0  # set by VideoDecoder from the first frame's display matrix
    if not cc.width or not cc.height:
        raise CorruptVideoError(path, "the video stream has no frame size")
    width, height = cc.width, cc.height
    if max_pixels and width * height > max_pixels:  # checked before any frame is decoded
        raise VideoTooLargeError(
            path, f"its frames are {width}x{height}, over the limit of {max_pixels:,} pixels a frame"
        )
    return VideoInfo(
        str(path),
        width,
        height,
        fps,
        frames,
        duration,
        cc.name,
        rotation,
        bool(container.streams.audio),
        stream.frames or 0,
    )


def probe(path: str | Path, *, max_pixels: int | None = LIMITS.max_frame_pixels) -> VideoInfo:
    """Open the file, read its header and its first frame, and describe it. Cheap: no full decode."""
    with VideoDecoder(path, max_pixels=max_pixels) as dec:
        return dec.info


def _start_s(container) -> float:
    """Where the container's timeline starts (s): stream times minus this are times from the video's start."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def packet_times(path: str | Path) -> np.ndarray:
    """The sorted presentation times (s, from the stream's start) of every video packet, by demuxing
    only; cached per file (device, inode, size, mtime), so the chunks of one video index it once."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _PACKET_TIMES_LOCK:
        times = _PACKET_TIMES.get(key)
    if times is None:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            start = _start_s(container)
            times = np.sort(
                np.asarray(
                    [float(p.pts * tb) - start for p in container.demux(stream) if p.pts is not None and p.size],
                    dtype=np.float64,
                )
            )
        with _PACKET_TIMES_LOCK:
            _PACKET_TIMES[key] = times
            while len(_PACKET_TIMES) > 8:
                _PACKET_TIMES.pop(next(iter(_PACKET_TIMES)))
    return times


_PACKET_TIMES: dict[tuple, np.ndarray] = {}
_PACKET_TIMES_LOCK = threading.Lock()


def keyframe_times(path: str | Path, times: Sequence[float]) -> list[float | None]:
    """For each time (s from the stream's start), the presentation time of the keyframe that a decoder asked
    to start there begins from: the last one at or before it. One seek and one packet each, no decoding; None
    where the seek lands on no keyframe at or before the time (a file without an index, a cut file)."""
    out: list[float | None] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            start = _start_s(container)
            for t in times:
                # round, not truncate: a keyframe's float time a hair under its tick would seek to the keyframe before
                container.seek(round((t + start) / tb), stream=stream, backward=True)
                packet = next((p for p in container.demux(stream) if p.pts is not None and p.size), None)
                k = None if packet is None or not packet.is_keyframe else float(packet.pts * tb) - start
                out.append(k if k is not None and k <= t + 1e-6 else None)
    except (av.error.FFmpegError, OSError):
        return [None] * len(times)
    return out


EBML_MAGIC, MATROSKA_SEGMENT = 0x1A45DFA3, 0x18538067


def _ebml_vint(buf: bytes, pos: int, *, marker: bool) -> tuple[int, int, bool]:
    """One EBML variable-length integer at ``pos``: (value, next position, whether it is "unknown" (all ones)).
    IDs keep their length marker (``marker``); sizes do not."""
    first = buf[pos]
    if first == 0:
        raise ValueError("invalid EBML integer")
    length = 9 - first.bit_length()
    value = first if marker else first & ((1 << (8 - length)) - 1)
    for b in buf[pos + 1 : pos + length]:
        value = (value << 8) | b
    if pos + length > len(buf):
        raise ValueError("EBML integer past the header read")
    return value, pos + length, not marker and value == (1 << (7 * length)) - 1


def matroska_declared_end(path: str | Path) -> int | None:
    """Where a Matroska or WebM file says it ends (the end of its Segment, in bytes); None for other containers and
    for a Segment of unknown size (a live recording). A file shorter than this was cut short."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
        element, pos, _ = _ebml_vint(head, 0, marker=True)
        if element != EBML_MAGIC:
            return None
        size, pos, _ = _ebml_vint(head, pos, marker=False)
        element, pos, _ = _ebml_vint(head, pos + size, marker=True)
        if element != MATROSKA_SEGMENT:
            return None
        size, pos, unknown = _ebml_vint(head, pos, marker=False)
    except (OSError, ValueError, IndexError):
        return None
    return None if unknown else pos + size


def completeness_claim(path: str | Path, info: VideoInfo) -> tuple[str, int | None]:
    """What the container claims that a cut-short file would fail: ("frames listed", n), ("segment size", bytes)
    or ("none", None) where it claims nothing checkable (MPEG-TS, raw streams)."""
    if info.frames_listed:
        return "frames listed", info.frames_listed
    declared = matroska_declared_end(path)
    if declared is not None:
        return "segment size", declared
    return "none", None


def check_complete(path: str | Path, info: VideoInfo, *, name: str | Path | None = None) -> tuple[str, int | None]:
    """``completeness_claim``, and a CorruptVideoError (naming ``name``, else ``path``) when the file is shorter than
    its container declares. Frame counts are checked where the frames are decoded."""
    claim, declared = completeness_claim(path, info)
    if claim == "segment size" and declared is not None:
        size = os.stat(path).st_size
        if size < declared:
            raise CorruptVideoError(
                Path(name or path),
                f"truncated: the file ends at byte {size:,} of the {declared:,} its container declares",
            )
    return claim, declared


def measured_duration(path: str | Path, claimed_s: float) -> float | None:
    """Where the video packets really end (s), read from the file's tail: a seek to the claimed end
    lands on the last keyframe, and the packets after it are demuxed (no decoding). ``None`` when no
    packet can be read. A header that claims days for a two-second file is caught here."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            start = _start_s(container)
            end = _last_end(container, stream, tb, seek_to=claimed_s + start)
            if end is None:  # the seek found nothing (a cut file): demux from the start
                container.seek(0, stream=stream, backward=True)
                end = _last_end(container, stream, tb, seek_to=None)
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    return None if end is None else max(end - start, 0.0)


def _last_end(container, stream, tb, *, seek_to: float | None) -> float | None:
    end = None
    try:
        if seek_to is not None:
            container.seek(int(seek_to / tb), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                t = float((packet.pts + (packet.duration or 0)) * tb)
                end = t if end is None else max(end, t)
    except av.error.FFmpegError:
        pass  # a cut file ends in an error: what was read before it counts
    return end


class VideoDecoder:
    """Decode a file into :class:`Frame` objects, optionally sampled to ``sample_fps``.

    Use as a context manager; closing twice is safe. Raises :class:`~clockwork.errors.VideoError`
    subclasses that name the file and the problem.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        sample_fps: float | None = None,
        threads: int = 0,
        start_s: float = 0.0,
        end_s: float | None = None,
        max_pixels: int | None = LIMITS.max_frame_pixels,
    ):
        if start_s < 0 or (end_s is not None and end_s <= start_s):
            raise ValueError(f"Invalid chunk ({start_s!r}, {end_s!r}). Supported values are 0 <= start_s < end_s.")
        if sample_fps is not None and not (
            isinstance(sample_fps, (int, float)) and sample_fps > 0 and math.isfinite(sample_fps)
        ):
            raise ValueError(f"Invalid sample_fps ({sample_fps!r}). Supported values are None or a positive number.")
        self.path = Path(path)
        self.sample_fps = float(sample_fps) if sample_fps else None
        self.start_s, self.end_s = float(start_s), end_s
        self.max_pixels = max_pixels
        self._container = _open(self.path)
        try:
            info = _info(self.path, self._container, max_pixels)
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            if threads:
                self._stream.codec_context.thread_count = threads
            self._start_s = _start_s(self._container)
            self._index0 = 0
            if self.start_s > 0:
                self._index0 = self._count_frames_before(self.start_s)
                tb = self._stream.time_base
                self._container.seek(round((self.start_s + self._start_s) / tb), stream=self._stream, backward=True)
            self._frames = self._container.decode(self._stream)
            self._first = self._next_raw()
            if self._first is None:
                raise CorruptVideoError(self.path, "no frame could be decoded")
            rotation = int(round((self._first.rotation or 0) / 90.0)) % 4 * 90
            if rotation in (90, 270):
                info = replace(info, width=info.height, height=info.width)
            self.info = replace(info, rotation=rotation)
        except BaseException:
            self.close()
            raise
        self.frames_decoded = self._index0  # absolute index one past the last frame decoded so far
        self.frames_skipped = 0  # decoded only to reach start_s: the seek's keyframe came before it

    @property
    def frames_in_chunk(self) -> int:
        """Frames decoded inside this decoder's time range (all of them when it has none)."""
        return self.frames_decoded - self._index0

    def _count_frames_before(self, t_s: float) -> int:
        """Frames whose presentation time is before ``t_s``, from the file's packet index (built once per file)."""
        return int(np.searchsorted(packet_times(self.path), t_s - 1e-6, side="left"))

    def _next_raw(self):
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(self.path, f"decoding failed ({exc.strerror or exc})") from None

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        if self._container is None:
            raise ValueError(f"VideoDecoder for {self.path} is closed")
        k = self.info.rotation // 90
        grid = SampleGrid(self.sample_fps, self.start_s)
        raw, self._first = self._first, None
        if raw is None:
            raise ValueError(f"VideoDecoder for {self.path} can be iterated only once")
        index = self._index0
        while raw is not None:
            t = (raw.time if raw.time is not None else index / (self.info.fps or 30.0)) - self._start_s
            if self.max_pixels and raw.width * raw.height > self.max_pixels:  # a stream may change size mid-way
                raise VideoTooLargeError(
                    self.path,
                    f"the frame at {max(t, 0.0):.2f} s is {raw.width}x{raw.height}, over the "
                    f"limit of {self.max_pixels:,} pixels a frame",
                )
            if t < self.start_s - 1e-6:  # frames between the seek's keyframe and the chunk start
                self.frames_skipped += 1
                raw = self._next_raw()
                continue
            if self.end_s is not None and t >= self.end_s - 1e-6:
                break
            if grid.keep(t):
                image = raw.to_ndarray(format="rgb24")
                if k:
                    image = np.ascontiguousarray(np.rot90(image, k))
                yield Frame(index, round(max(t, 0.0), 6), image)
            index += 1
            self.frames_decoded = index
            raw = self._next_raw()
        expected = self.info.frames_total
        whole = self.start_s == 0 and self.end_s is None
        if whole and self._stream.frames and index < 0.95 * expected - 1:
            raise CorruptVideoError(
                self.path, f"truncated: decoded {index} of the {expected} frames the container lists"
            )
        logger.debug("decoded %d frames from %s", index, self.path)

    def batches(self, size: int) -> Iterator[list[Frame]]:
        """Frames in lists of at most ``size``."""
        if size < 1:
            raise ValueError(f"Invalid batch size ({size}). Supported values are integers >= 1.")
        batch: list[Frame] = []
        for frame in self:
            batch.append(frame)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch
