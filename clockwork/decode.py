"""Frames out of a video on the CPU: RGB arrays with their true presentation timestamps.

PyAV (FFmpeg's libraries) was chosen over ``cv2.VideoCapture`` by measurement and by need
(``python -m bench.cpu``; figures in docs/BENCHMARKS.md): it gives each frame's own timestamp, so
variable-frame-rate files give true times; it exposes the display matrix, so rotation is honoured
explicitly; and it raises FFmpeg's own errors, which we turn into typed ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from clockwork._logging import logger
from clockwork.errors import CorruptVideoError, NotAVideoError, NoVideoStreamError, VideoNotFoundError

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


@dataclass
class Frame:
    """One decoded frame. ``index`` counts every decoded frame from 0, sampled or not."""

    index: int
    timestamp_s: float
    image: np.ndarray  # H x W x 3, uint8, RGB

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"Frame.image must be HxWx3 uint8 RGB, got shape {self.image.shape} dtype {self.image.dtype}")
        if self.index < 0:
            raise ValueError(f"Frame.index must be >= 0, got {self.index}")

    def __repr__(self):
        return f"Frame(index={self.index}, timestamp_s={self.timestamp_s:.3f}, image=<{'x'.join(map(str, self.image.shape))} uint8>)"


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


def _info(path: Path, container: av.container.InputContainer) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        if not container.streams.audio:  # FFmpeg guessed some text or data format: not a video at all
            raise NotAVideoError(path, f"FFmpeg found no audio or video in it (streams: {', '.join(kinds) or 'none'})")
        raise NoVideoStreamError(path, f"the file has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
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
    return VideoInfo(str(path), width, height, fps, frames, duration, cc.name, rotation, bool(container.streams.audio))


def probe(path: str | Path) -> VideoInfo:
    """Open the file, read its header and its first frame, and describe it. Cheap: no full decode."""
    with VideoDecoder(path) as dec:
        return dec.info


class VideoDecoder:
    """Decode a file into :class:`Frame` objects, optionally sampled to ``sample_fps``.

    Use as a context manager; closing twice is safe. Raises :class:`~clockwork.errors.VideoError`
    subclasses that name the file and the problem.
    """

    def __init__(self, path: str | Path, *, sample_fps: float | None = None, threads: int = 0,
                 start_s: float = 0.0, end_s: float | None = None):
        if start_s < 0 or (end_s is not None and end_s <= start_s):
            raise ValueError(f"Invalid chunk ({start_s!r}, {end_s!r}). Supported values are 0 <= start_s < end_s.")
        if sample_fps is not None and not (isinstance(sample_fps, (int, float)) and sample_fps > 0 and math.isfinite(sample_fps)):
            raise ValueError(f"Invalid sample_fps ({sample_fps!r}). Supported values are None or a positive number.")
        self.path = Path(path)
        self.sample_fps = float(sample_fps) if sample_fps else None
        self.start_s, self.end_s = float(start_s), end_s
        self._container = _open(self.path)
        try:
            info = _info(self.path, self._container)
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            if threads:
                self._stream.codec_context.thread_count = threads
            start = self._container.start_time
            self._start_s = start / av.time_base if start is not None else 0.0
            self._index0 = 0
            if self.start_s > 0:
                self._index0 = self._count_frames_before(self.start_s)
                tb = self._stream.time_base
                self._container.seek(int((self.start_s + self._start_s) / tb), stream=self._stream, backward=True)
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

    @property
    def frames_in_chunk(self) -> int:
        """Frames decoded inside this decoder's time range (all of them when it has none)."""
        return self.frames_decoded - self._index0

    def _count_frames_before(self, t_s: float) -> int:
        """Frames whose presentation time is before ``t_s``, by demuxing packets only (no decoding)."""
        tb = self._stream.time_base
        n = 0
        with av.open(str(self.path)) as other:
            stream = other.streams.video[0]
            for packet in other.demux(stream):
                if packet.pts is not None and packet.size and float(packet.pts * tb) - self._start_s < t_s - 1e-6:
                    n += 1
        return n

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
            if t < self.start_s - 1e-6:  # frames between the seek's keyframe and the chunk start
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
            raise CorruptVideoError(self.path, f"truncated: decoded {index} of the {expected} frames the container lists")
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
