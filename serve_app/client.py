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
from clockwork.settings import LIMITS
from clockwork.timeline.options import DetectOptions


class DetectorClient(Protocol):
    async def labels(self) -> list[str]: ...

    async def ping(self) -> None:
        """Return when a detector replica answers (readiness)."""

    async def model_info(self) -> dict: ...

    def detect_chunk(
        self,
        path: str,
        start_s: float,
        end_s: float | None,
        *,
        options: DetectOptions,
        rate: float | None,
        roots: list[str] | None = None,
        max_pixels: int | None = LIMITS.max_frame_pixels,
    ) -> AsyncIterator[dict]: ...


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

    async def detect_chunk(
        self, path, start_s, end_s, *, options, rate, roots=None, max_pixels=LIMITS.max_frame_pixels
    ) -> AsyncIterator[dict]:
        stream = self.handle.options(stream=True).detect_chunk.remote(
            path, start_s, end_s, options=options, rate=rate, roots=roots, max_pixels=max_pixels
        )
        finished = False
        try:
            async for item in stream:
                yield item
            finished = True
        finally:
            if not finished:  # the job was cancelled (or a sibling chunk failed): stop the replica's work on it too
                stream.cancel()


class LocalDetectorClient:
    """A :class:`~clockwork.detect.detector.Detector` in this process; one batch runs through the model at a time."""

    def __init__(self, detector: Any):
        self.detector = detector
        self._lock = threading.Lock()

    async def labels(self) -> list[str]:
        return self.detector.findable_labels

    async def ping(self) -> None:
        return None

    async def model_info(self) -> dict:
        return self.detector.model_info

    async def detect_chunk(
        self, path, start_s, end_s, *, options, rate, roots=None, max_pixels=LIMITS.max_frame_pixels
    ) -> AsyncIterator[dict]:
        from clockwork.timeline.pipeline import Prefetch, detect_frames, in_process
        from clockwork.timeread.reader import shared_reader
        from clockwork.video.frames import FrameReader
        from clockwork.video.media import open_confined

        self.detector.label_ids(options.labels)
        with open_confined(path, roots) as opened:
            reader = await asyncio.to_thread(
                renamed_errors(FrameReader, path),
                opened,
                device=self.detector.device,
                sample_fps=rate,
                start_s=start_s,
                end_s=end_s,
                max_pixels=max_pixels,
            )
        prepare, model = in_process(self.detector, options)

        def infer(batch, prepared):
            with self._lock:
                return model(batch, prepared)

        frames = Prefetch(
            detect_frames(
                reader,
                options,
                prepare=prepare,
                infer=infer,
                clock_reader=shared_reader(str(self.detector.device)) if options.read_time else None,
            ),
            depth=1,
            loop=asyncio.get_running_loop(),
        )
        try:
            while (item := await frames.aget()) is not None:
                batch, found = item
                yield {"frames": [f for f in found if f.detections], "processed": len(batch)}
            yield {"done": True, "decoder": reader.decoder, "frames_decoded": reader.frames_decoded}
        finally:  # a cancelled job stops here within a batch, and frees the model for the next
            await asyncio.shield(asyncio.to_thread(lambda: (frames.close(), reader.close())))


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
