"""How the API talks to a detector: over a Ray Serve handle, or in-process without Ray.

Both clients stream the same items for a chunk of a video::

    {"frames": [FrameDetections, ...], "processed": n}   # per batch; frames with detections only
    {"done": True, "decoder": "nvdec" | "cpu", "frames_decoded": n}

The in-process client lets ``serve_app.api.build_app`` run without Ray (the contract tests use it):
the same HTTP contract, with the real detector on this machine and no cluster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

from clockwork.errors import VideoError
from clockwork.settings import DETECT, LIMITS


class DetectorClient(Protocol):
    async def labels(self) -> list[str]: ...

    async def ping(self) -> None:
        """Return when a detector replica answers (readiness)."""

    async def model_info(self) -> dict: ...

    def detect_chunk(self, path: str, start_s: float, end_s: float | None, *, labels: list[str] | None,
                     min_score: float | dict, sample_fps: float | None, views: list[str],
                     read_time: bool = DETECT.read_time, roots: list[str] | None = None,
                     multiscale_fps: float | None = DETECT.multiscale_fps,
                     max_pixels: int | None = LIMITS.max_frame_pixels) -> AsyncIterator[dict]: ...


class RayDetectorClient:
    """The Detector deployment behind a Serve handle; results stream back."""

    def __init__(self, handle: Any):
        self.handle = handle
        self._info: dict | None = None

    async def _information(self) -> dict:
        if self._info is None:
            self._info = await self.handle.options(stream=False).info.remote()
        return self._info

    async def labels(self) -> list[str]:
        return (await self._information())["labels"]

    async def ping(self) -> None:
        self._info = await self.handle.options(stream=False).info.remote()

    async def model_info(self) -> dict:
        return (await self._information())["model"]

    async def detect_chunk(self, path, start_s, end_s, *, labels, min_score, sample_fps, views, read_time=DETECT.read_time,
                           roots=None, multiscale_fps=DETECT.multiscale_fps,
                           max_pixels=LIMITS.max_frame_pixels) -> AsyncIterator[dict]:
        stream = self.handle.options(stream=True).detect_chunk.remote(
            path, start_s, end_s, labels=labels, min_score=min_score, sample_fps=sample_fps, views=views, read_time=read_time,
            roots=roots, multiscale_fps=multiscale_fps, max_pixels=max_pixels)
        finished = False
        try:
            async for item in stream:
                yield item
            finished = True
        finally:
            if not finished:  # the job was cancelled (or a sibling chunk failed): stop the replica's work on it too
                stream.cancel()


class LocalDetectorClient:
    """A :class:`~clockwork.detector.Detector` in this process; one chunk runs through the model at a time."""

    def __init__(self, detector: Any):
        self.detector = detector
        self._lock = threading.Lock()

    async def labels(self) -> list[str]:
        return self.detector.findable_labels

    async def ping(self) -> None:
        return None

    async def model_info(self) -> dict:
        return self.detector.model_info

    async def detect_chunk(self, path, start_s, end_s, *, labels, min_score, sample_fps, views, read_time=DETECT.read_time,
                           roots=None, multiscale_fps=DETECT.multiscale_fps,
                           max_pixels=LIMITS.max_frame_pixels) -> AsyncIterator[dict]:
        from clockwork.decode import SampleGrid
        from clockwork.frames import FrameReader
        from clockwork.media import open_confined
        from clockwork.pipeline import Prefetch, read_clocks
        from clockwork.reader import shared_reader
        from clockwork.views import view_stride

        self.detector.label_ids(labels)
        with open_confined(path, roots) as opened:
            reader = await asyncio.to_thread(renamed_errors(FrameReader, path), opened, device=self.detector.device,
                                             sample_fps=sample_fps, start_s=start_s, end_s=end_s, max_pixels=max_pixels)
        stride = view_stride(reader.info.fps, sample_fps, multiscale_fps)
        batches = Prefetch(reader)
        grid = SampleGrid(DETECT.read_fps, start_s) if read_time else None
        try:
            while (batch := await asyncio.to_thread(batches.get)) is not None:
                found = await asyncio.to_thread(self._detect, batch, labels, min_score, views, stride)
                if grid is not None:
                    found = await asyncio.to_thread(read_clocks, shared_reader(str(self.detector.device)), batch, found, grid,
                                                  min_score=0.0)
                yield {"frames": [f for f in found if f.detections], "processed": len(batch)}
            yield {"done": True, "decoder": reader.decoder, "frames_decoded": reader.frames_decoded}
        finally:  # a cancelled job stops here within a batch, and frees the model for the next
            await asyncio.shield(asyncio.to_thread(lambda: (batches.close(), reader.close())))

    def _detect(self, batch, labels, min_score, views, stride):
        with self._lock:
            return self.detector.detect_batch(batch, labels=labels, min_score=min_score, views=views, stride=stride)


def renamed_errors(fn, path: str):
    """``fn`` whose VideoErrors name ``path`` (the file asked for), not the descriptor it was opened by."""
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VideoError as exc:
            raise type(exc)(path, exc.reason) from None
    return call


def video_error_of(exc: BaseException) -> VideoError | None:
    """The VideoError behind ``exc``: itself, or the cause Ray wraps a replica's exception around
    (whose own text is the whole remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VideoError):
        return cause
    return exc if isinstance(exc, VideoError) else None
