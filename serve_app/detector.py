"""The Detector deployment: decodes its own chunk of a video and batches inference across requests.

Video bytes and decoded frames never leave the replica: a call names a file and a time range, the
replica reads it through ``clockwork.video.frames.FrameReader`` (NVDEC where it can, the CPU otherwise),
letterboxes where the frames are, and small packs of frames from every in-flight chunk meet in one
``@serve.batch`` inference call. Results stream back as ``FrameDetections``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import torch
from ray import serve

from clockwork.detect.detector import Detector, Prepared
from clockwork.gpu_stats import GpuStats
from clockwork.settings import LIMITS, SERVE_BATCH
from clockwork.timeline.options import DetectOptions
from clockwork.timeline.pipeline import Prefetch, detect_frames, hold_thresholds
from clockwork.timeread.reader import shared_reader
from clockwork.video.decode import VideoInfo, probe
from clockwork.video.frames import FrameReader
from clockwork.video.media import open_confined
from serve_app.client import renamed_errors
from serve_app.config import DetectorArgs
from serve_app.metrics import DetectorMetrics


@dataclass
class FramePack:
    """Letterboxed frames of one chunk on their way to the batcher."""

    prepared: Prepared  # one row per view of each frame
    labels: list[str] | None
    min_score: float | dict

    @property
    def n(self) -> int:
        """Model inputs: the batcher counts these, so views and frames share one batch budget."""
        return len(self.prepared)


async def _shielded_close(*closables) -> None:
    """Close in a worker thread (a decoder may be mid-batch), and finish closing even if the caller is cancelled
    again."""

    def close_all() -> None:
        for c in closables:
            c.close()

    await asyncio.shield(asyncio.to_thread(close_all))


def _pack_frames(packs) -> int:
    return sum(p.n for p in packs)


@serve.deployment(
    name="Detector",
    # A call is a chunk (streamed) or one of the API's small calls; packs of the chunks decoding here meet in one batch
    # inside the replica. 64 by default (SERVE_BATCH.max_ongoing_requests); decoders + 1 with the API's
    # max_chunks_total.
    # Serve warns when this is below the batch size (max_batch_frames): it counts calls as if each were one frame.
    max_ongoing_requests=SERVE_BATCH.max_ongoing_requests,
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    health_check_period_s=5,
)
class DetectorDeployment:
    def __init__(self, args: DetectorArgs | dict | None = None):
        self.args = args if isinstance(args, DetectorArgs) else DetectorArgs.model_validate(args or {})
        self.detector = Detector(device=self.args.device, half=self.args.half, head=self.args.head)
        self.device = str(self.detector.device)
        self.metrics = DetectorMetrics()
        self._tags = {"device": self.detector.device.type}
        self._configure(self.args.max_batch_frames, self.args.batch_wait_timeout_s)
        self._probes: dict = {}
        self._decoders = asyncio.Semaphore(self.args.decoders)  # see SERVE_BATCH.decoders: NVDEC memory
        self.gpu_id = (self.detector.device.index or 0) if self.detector.device.type == "cuda" else None
        if self.gpu_id is not None:
            # Bound this replica's share of the card for PyTorch's allocator; a Ray GPU fraction is only a
            # scheduling hint (Ray issue #41432). NVDEC surfaces are outside this bound (see README).
            if self.args.memory_fraction:
                torch.cuda.set_per_process_memory_fraction(self.args.memory_fraction, self.gpu_id)
            self.gpu_stats = GpuStats(self.gpu_id)
            try:
                asyncio.get_running_loop().create_task(self._export_gpu_stats())
            except RuntimeError:
                pass

    async def _export_gpu_stats(self) -> None:
        while True:
            snap = await asyncio.to_thread(self.gpu_stats.read)
            tags = {"gpu": str(self.gpu_id)}
            self.metrics.gpu_util.set(snap["gpu_util"], tags=tags)
            self.metrics.dec_util.set(snap["dec_util"], tags=tags)
            self.metrics.mem_used.set(snap["mem_used"], tags=tags)
            self.metrics.replica_mem.set(snap["process_mem"], tags=tags)
            await asyncio.sleep(5)

    def gpu_snapshot(self) -> dict:
        return self.gpu_stats.read() if self.gpu_id is not None else {}

    def _configure(self, max_batch_frames: int, wait_s: float) -> None:
        self._infer_batch.set_max_batch_size(max_batch_frames)
        self._infer_batch.set_batch_wait_timeout_s(wait_s)

    def reconfigure(self, user_config: dict) -> None:
        """Batch size and wait time change at run time through the Serve config's ``user_config``."""
        self._configure(
            int(user_config.get("max_batch_frames", self.args.max_batch_frames)),
            float(user_config.get("batch_wait_timeout_s", self.args.batch_wait_timeout_s)),
        )

    def _probe(self, path: str) -> VideoInfo:
        """The header and first frame, cached per file: a chunk of a long video must not pay a CPU seek."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        info = self._probes.get(key)
        if info is None:
            info = probe(path)
            if len(self._probes) > 1024:
                self._probes.clear()
            self._probes[key] = info
        return info

    def info(self) -> dict:
        import ray

        return {
            "device": self.device,
            "model": self.detector.model_info,
            "labels": self.detector.findable_labels,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    @serve.batch(
        max_batch_size=SERVE_BATCH.max_batch_frames,
        batch_wait_timeout_s=SERVE_BATCH.batch_wait_timeout_s,
        batch_size_fn=_pack_frames,
    )
    async def _infer_batch(self, packs: list[FramePack]) -> list[list]:
        det = self.detector
        merged = Prepared.concat([p.prepared for p in packs])
        t = time.perf_counter()
        raw = await asyncio.to_thread(lambda: det.infer(det.model_input(merged)))
        out, offset = [], 0
        for p in packs:
            out.append(det.postprocess(raw[offset : offset + p.n], p.prepared, min_score=p.min_score, labels=p.labels))
            offset += p.n
        self.metrics.stage_seconds.observe(time.perf_counter() - t, tags={"stage": "inference"})
        self.metrics.frames_inferred.inc(len(merged), tags=self._tags)
        self.metrics.batch_frames.observe(len(merged), tags=self._tags)
        self.metrics.batch_requests.observe(len(packs), tags=self._tags)
        return out

    async def detect_chunk(
        self,
        path: str,
        start_s: float = 0.0,
        end_s: float | None = None,
        *,
        options: DetectOptions,
        rate: float | None,
        roots: list[str] | None = None,
        max_pixels: int | None = LIMITS.max_frame_pixels,
    ) -> AsyncIterator[dict]:
        """Stream ``{"frames": [FrameDetections, ...], "processed": n}`` per batch (frames with detections only), then
        ``{"done": True, "decoder": ..., "frames_decoded": n}``: ``[start_s, end_s)`` at ``rate`` frames a second (None:
        every frame), as ``options`` say. Raises VideoError subclasses for bad files. At most ``decoders`` chunks
        decode at once (``SERVE_BATCH.decoders``)."""
        self.detector.label_ids(options.labels)
        async with self._decoders:
            async for item in self._detect_chunk(path, start_s, end_s, options, rate, roots, max_pixels):
                yield item

    async def _detect_chunk(self, path, start_s, end_s, options, rate, roots, max_pixels) -> AsyncIterator[dict]:
        # the file is opened once here and read through that descriptor: a name swapped for a symlink after the
        # API's check is refused (roots are the API's media roots)
        with open_confined(path, roots) as opened:
            info = await asyncio.to_thread(renamed_errors(self._probe, path), opened)
            reader = await asyncio.to_thread(
                renamed_errors(FrameReader, path),
                opened,
                device=self.detector.device,
                sample_fps=rate,
                start_s=start_s,
                end_s=end_s,
                batch_size=self.args.frames_per_call,
                nvdec=self.args.nvdec,
                info=info,
                nvdec_reuse=self.args.nvdec_reuse,
                nvdec_stream=self.args.nvdec_stream,
                max_pixels=max_pixels,
            )
        if reader.fallback_reason:
            self.metrics.fallbacks.inc(tags={"reason": reader.fallback_reason})
        loop = asyncio.get_running_loop()
        threshold = hold_thresholds(options.min_score)

        last = [time.perf_counter()]  # when the decoding thread last asked the reader for a batch

        def prepare(batch, stride: int):  # in the decoding thread, right after the reader gave the batch
            t = time.perf_counter()
            prepared = self.detector.prepare(batch, options.views, stride)
            self.metrics.stage_seconds.observe(t - last[0], tags={"stage": "decode"})
            self.metrics.stage_seconds.observe(time.perf_counter() - t, tags={"stage": "prepare"})
            self.metrics.frames_decoded.inc(len(batch), tags=self._tags)
            last[0] = time.perf_counter()
            return prepared

        def infer(batch, prepared):  # in the chunk's thread; the batch meets other chunks' packs on the event loop
            pack = FramePack(prepared, options.labels, threshold)
            return asyncio.run_coroutine_threadsafe(self._infer_batch(pack), loop).result()

        frames = detect_frames(
            reader,
            options,
            prepare=prepare,
            infer=infer,
            depth=3,
            clock_reader=shared_reader(self.device) if options.read_time else None,
        )
        produced = Prefetch(frames, depth=1, loop=loop)
        try:
            while (item := await produced.aget()) is not None:
                batch, found = item
                yield {"frames": [f for f in found if f.detections], "processed": len(batch)}
            yield {"done": True, "decoder": reader.decoder, "frames_decoded": reader.frames_decoded}
        finally:
            # also on a cancelled request (a cancelled job): the decoder and this call's place end within a batch
            await _shielded_close(produced, reader)
