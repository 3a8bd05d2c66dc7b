"""The Detector deployment: decodes its own chunk of a video and batches inference across requests.

Video bytes and decoded frames never leave the replica: a call names a file and a time range, the
replica decodes it (so no large arrays cross handles or the HTTP proxy), and small lists of frames
from every in-flight chunk meet in one ``@serve.batch`` inference call. Results stream back as
plain detection tuples.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np
import torch
from ray import serve

from clockwork.boxes import Letterbox
from clockwork.decode import VideoDecoder, VideoInfo, probe
from clockwork.detector import Detector
from clockwork.gpu_stats import GpuStats
from clockwork.nvdec import GpuVideoDecoder, gpu_decode_problem, log_fallback
from clockwork.pipeline import prefetch
from serve_app.config import DetectorArgs
from serve_app.metrics import DetectorMetrics


@dataclass
class FramePack:
    """Letterboxed frames of one chunk on their way to the batcher."""

    images: "np.ndarray | torch.Tensor"  # uint8 [n,S,S,3] letterboxed on the CPU, or a normalised [n,3,S,S] GPU batch
    metas: list[Letterbox]
    labels: list[str] | None
    min_score: float | dict

    @property
    def n(self) -> int:
        return len(self.metas)


def _pack_frames(packs) -> int:
    return sum(p.n for p in packs)


@serve.deployment(
    name="Detector",
    # max_ongoing_requests must be >= the calls one batch can hold (max_batch_frames / frames_per_call),
    # or batches never fill (Ray issue #43288); 64 also silences Serve's check, which counts calls as frames.
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    health_check_period_s=5,
)
class DetectorDeployment:
    def __init__(self, args: dict | None = None):
        self.args = DetectorArgs(**(args or {}))
        self.detector = Detector(device=self.args.device, half=self.args.half)
        self.device = str(self.detector.device)
        self.metrics = DetectorMetrics()
        self._tags = {"device": self.detector.device.type}
        self._configure(self.args.max_batch_frames, self.args.batch_wait_timeout_s)
        self._probes: dict = {}
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
        self._configure(int(user_config.get("max_batch_frames", self.args.max_batch_frames)),
                        float(user_config.get("batch_wait_timeout_s", self.args.batch_wait_timeout_s)))

    def _probe(self, path: str) -> VideoInfo:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        info = self._probes.get(key)
        if info is None:
            info = probe(path)
            if len(self._probes) > 1024:
                self._probes.clear()
            self._probes[key] = info
        return info

    def info(self) -> dict:
        import ray

        return {"device": self.device, "model": self.detector.model_info, "labels": self.detector.labels,
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "node_id": ray.get_runtime_context().get_node_id()}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.02, batch_size_fn=_pack_frames)
    async def _infer_batch(self, packs: list[FramePack]) -> list[list]:
        det = self.detector
        on_gpu = isinstance(packs[0].images, torch.Tensor)
        if on_gpu:
            images = torch.cat([p.images for p in packs]) if len(packs) > 1 else packs[0].images
        else:
            images = np.concatenate([p.images for p in packs]) if len(packs) > 1 else packs[0].images
        t = time.perf_counter()

        def run():
            batch = images if on_gpu else det.normalise(torch.from_numpy(images).to(det.device, non_blocking=True))
            return det.infer(batch)

        raw = await asyncio.to_thread(run)
        out, offset = [], 0
        for p in packs:
            out.append(det.postprocess(raw[offset:offset + p.n], p.metas, min_score=p.min_score, labels=p.labels))
            offset += p.n
        self.metrics.stage_seconds.observe(time.perf_counter() - t, tags={"stage": "inference"})
        self.metrics.frames_inferred.inc(len(images), tags=self._tags)
        self.metrics.batch_frames.observe(len(images), tags=self._tags)
        self.metrics.batch_requests.observe(len(packs), tags=self._tags)
        return out

    async def detect_chunk(self, path: str, start_s: float = 0.0, end_s: float | None = None, *,
                           labels: list[str] | None, min_score: float | dict, sample_fps: float | None) -> AsyncIterator[dict]:
        """Stream ``{"frames": [[frame_no, t, [[x, y, w, h, label, score], ...]], ...], "processed": n}``
        per step, then ``{"done": True, "frames_decoded": n}``. Raises VideoError subclasses for bad files."""
        self.detector.label_ids(labels)
        step = self.args.frames_per_call
        # The header and first frame say whether NVDEC can take the file; cached per file, as a chunk
        # of a long video must not pay a CPU seek just to find that out.
        info = await asyncio.to_thread(self._probe, path)
        problem = gpu_decode_problem(info, self.detector.device) if self.args.nvdec else "disabled"
        if problem is None:
            decoder = GpuVideoDecoder(path, info, gpu_id=self.gpu_id, batch=step, sample_fps=sample_fps,
                                      start_s=start_s, end_s=end_s)
        else:
            decoder = VideoDecoder(path, sample_fps=sample_fps, start_s=start_s, end_s=end_s)
            if self.detector.device.type == "cuda":
                log_fallback(path, problem)  # visible, never silent
                self.metrics.fallbacks.inc(tags={"reason": problem})

        def packs():
            if problem is None:
                for batch in decoder.batches():
                    t = time.perf_counter()
                    images, metas = self.detector.letterbox_gpu(batch.frames)
                    yield list(zip(batch.indexes, batch.timestamps)), FramePack(images, metas, labels, min_score), time.perf_counter() - t
                return
            for frames in decoder.batches(step):
                t = time.perf_counter()
                images, metas = self.detector.letterbox_batch([f.image for f in frames])
                yield [(f.index, f.timestamp_s) for f in frames], FramePack(images, metas, labels, min_score), time.perf_counter() - t

        produced = prefetch(packs(), depth=3)
        try:
            while True:
                t = time.perf_counter()
                item = await asyncio.to_thread(next, produced, None)
                if item is None:
                    break
                stamps, pack, prep_s = item
                self.metrics.stage_seconds.observe(time.perf_counter() - t + prep_s, tags={"stage": "decode"})
                self.metrics.frames_decoded.inc(pack.n, tags=self._tags)
                dets = await self._infer_batch(pack)
                yield {
                    "frames": [[idx, ts, [[d.x, d.y, d.w, d.h, d.label, d.score] for d in found]]
                               for (idx, ts), found in zip(stamps, dets) if found],
                    "processed": pack.n,
                    "last_frame": stamps[-1][0],
                }
            yield {"done": True, "decoder": "cpu" if problem else "nvdec",
                   "frames_decoded": decoder.frames_in_chunk}
        finally:
            produced.close()
            decoder.close()
