"""Decoding on the GPU with NVDEC (PyNvVideoCodec), frames straight into torch without a host copy.

``GpuVideoDecoder`` wraps PyNvVideoCodec's ``ThreadedDecoder`` with ``use_device_memory=True`` and
RGB output, so NV12->RGB runs on the GPU; each decoded frame reaches torch through DLPack. The
letterbox of every view runs on the GPU too (``Detector.prepare``). Where NVDEC cannot serve a file
(no GPU, no PyNvVideoCodec, a codec the card cannot decode in hardware such as AV1 on Hopper, a
rotated file), :func:`gpu_decode_problem` names the reason and ``clockwork.video.frames.FrameReader``
falls back to the CPU path, visibly (a log line and a metric label). Use ``FrameReader``; this module
is its NVDEC half.

Timestamps on this path are ``frame index / average fps``: exact for constant-frame-rate files.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clockwork.settings import DETECT
from clockwork.video.decode import SampleGrid, VideoInfo

# NVDEC on Hopper (H100/H200): H.264, HEVC, VP9, MPEG-2 ... but no AV1 in hardware.
NVDEC_CODECS = {"h264", "hevc", "vp9", "mpeg2video", "mpeg4", "vc1", "vp8", "mjpeg"}


def gpu_decode_problem(info: VideoInfo) -> str | None:
    """None when NVDEC can decode this file on a CUDA device, else a short reason (a metric label)."""
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        return "no_pynvvideocodec"
    if info.codec not in NVDEC_CODECS:
        return f"codec_{info.codec}"
    if info.rotation:
        return "rotation"
    return None


# Decoders run in the CUDA context PyTorch uses (the device's primary context) rather than one of their own each, so
# a process holds one context, not one more per open chunk. In one process on an H100 the two gave the same
# frames/s (bench/gpu.py's direct stage compares them).
SHARE_CONTEXT = True


@functools.cache
def primary_context(gpu_id: int) -> int:
    """The handle of GPU ``gpu_id``'s primary CUDA context (the one PyTorch runs in), retained once per process."""
    import ctypes

    torch.cuda.init()
    lib = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    for call, args in (
        ("cuDeviceGet", (ctypes.byref(dev), gpu_id)),
        ("cuDevicePrimaryCtxRetain", (ctypes.byref(ctx), dev)),
    ):
        status = getattr(lib, call)(*args)
        if status != 0:
            raise RuntimeError(f"{call} failed on GPU {gpu_id} (CUresult {status})")
    return int(ctx.value)


class DecoderPool:
    """Decoders a finished chunk left, kept for the next chunk of this process (``DETECT.nvdec_reuse``).

    Ending a ``ThreadedDecoder`` destroys its NVDEC decoder and surfaces while holding the GIL (about 0.1 s a chunk
    in a profiled replica); ``reconfigure_decoder`` points a kept one at the next
    file and frame instead. The pool keeps at most as many idle decoders as were ever open at once in the process
    (a replica's ``decoders``, the CLI's one), so it holds no GPU memory that the busiest moment did not.
    A decoder that raised is ended, never kept."""

    def __init__(self):
        self._idle: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self.open = 0  # decoders handed out and not yet returned
        self.peak = 0
        self.reused = 0  # chunks that got a kept decoder (a test and the benchmarks read it)

    def take(self, key: tuple):
        with self._lock:
            idle = self._idle.get(key)
            dec = idle.pop() if idle else None
            self.open += 1
            self.peak = max(self.peak, self.open)
            self.reused += dec is not None
            return dec

    def give(self, key: tuple, dec, keep: bool) -> None:
        """Return a decoder that ``take`` handed out (None: its construction failed)."""
        with self._lock:
            self.open -= 1
            kept = sum(len(v) for v in self._idle.values())
            if dec is None:
                return
            if keep and kept < self.peak:
                self._idle.setdefault(key, []).append(dec)
                return
        _end(dec)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for decs in idle.values():
            for dec in decs:
                _end(dec)


def _end(dec) -> None:
    try:
        dec.end()
    except Exception:  # already ended
        pass


POOL = DecoderPool()


@dataclass
class _Session:
    """One NVDEC decoder (a ``ThreadedDecoder``) and the CUDA stream it works on (None: the context's null stream).

    With a stream of its own (``DETECT.nvdec_stream``) the decoder's colour conversion and our copy out of its surfaces
    run on that stream. On the null stream PyNvVideoCodec waits for the stream after every frame
    (``cuStreamSynchronize``
    in ``NvDecoder::HandlePictureDisplay``), and in PyTorch's context that stream is also the one the model's kernels
    run on: each frame then waited for the model's queued work. Through the API a stream of its own gave the same
    frames/s and took less CPU a replica."""

    dec: Any
    stream: torch.cuda.Stream | None

    def end(self) -> None:
        _end(self.dec)


@dataclass
class GpuBatch:
    indexes: list[int]
    timestamps: list[float]
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the GPU


class GpuVideoDecoder:
    """Decode ``[start_s, end_s)`` of a file on GPU ``gpu_id`` in batches of ``batch`` frames."""

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        *,
        gpu_id: int = 0,
        batch: int = 32,
        sample_fps: float | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        reuse: bool = DETECT.nvdec_reuse,
        stream: bool = DETECT.nvdec_stream,
    ):
        import PyNvVideoCodec as nvc

        self.info = info
        self.fps = info.fps or 30.0
        self.batch = batch
        self.sample_fps = sample_fps
        self.start_frame = int(math.ceil(start_s * self.fps - 1e-6))
        self.end_frame = None if end_s is None else int(math.ceil(end_s * self.fps - 1e-6))
        stream = stream and SHARE_CONTEXT  # a stream of PyTorch's context, so only for a decoder in that context
        self._key = (gpu_id, batch, SHARE_CONTEXT, stream) if reuse else None
        self._healthy = True  # kept for the next chunk only when nothing raised
        # Held while a batch is fetched and copied out, and while closing: once close() returns, this object never
        # touches the decoder again, even from a thread still iterating it (an abandoned prefetch), since a kept
        # decoder may by then serve another chunk.
        self._lock = threading.Lock()
        self._copied: torch.cuda.Event | None = None  # the last batch's copy out of the decoder's surfaces
        session = POOL.take(self._key) if reuse else None
        try:
            if session is not None:
                session.dec.reconfigure_decoder(str(path), self.start_frame)
            else:
                session = _Session(None, torch.cuda.Stream(device=gpu_id, priority=-1) if stream else None)
                context = {"cuda_context": primary_context(gpu_id)} if SHARE_CONTEXT else {}
                if session.stream is not None:
                    context["cuda_stream"] = session.stream.cuda_stream
                # one NVDEC decoder per ThreadedDecoder (its cache would keep one per resolution it has seen)
                session.dec = nvc.ThreadedDecoder(
                    str(path),
                    buffer_size=batch * 2,
                    gpu_id=gpu_id,
                    use_device_memory=True,
                    output_color_type=nvc.OutputColorType.RGB,
                    start_frame=self.start_frame,
                    decoder_cache_size=1,
                    **context,
                )
        except BaseException:
            if reuse:
                POOL.give(self._key, session if session is not None and session.dec is not None else None, keep=False)
            raise
        self._session: _Session | None = session
        self.frames_in_chunk = 0  # frames decoded inside the chunk so far (the CPU decoder names it the same)

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is None:
            return
        if self._key is None:
            session.end()
            return
        if self._copied is not None:  # the copy must be done before another chunk's frames land in those surfaces
            self._copied.synchronize()
        POOL.give(self._key, session, keep=self._healthy)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def batches(self) -> Iterator[GpuBatch]:
        """Yield batches; frames are copied out of the decoder's buffers before the next fetch."""
        index = self.start_frame
        grid = SampleGrid(self.sample_fps, index / self.fps)
        while True:
            with self._lock:
                session = self._session
                if session is None:  # closed while this iteration was suspended: the decoder is not ours any more
                    return
                self._healthy = False
                frames = session.dec.get_batch_frames(self.batch)
                self._healthy = True
                if not frames:
                    return
                keep_idx, keep_ts, tensors = [], [], []
                stacked = None
                # On the decoder's own stream the copy follows the frames' conversion there, and comes before the
                # decoder writes those surfaces again (after the next fetch). torch.cuda.stream(None) changes nothing.
                with torch.cuda.stream(session.stream):
                    for frame in frames:
                        if self.end_frame is not None and index >= self.end_frame:
                            break
                        t = index / self.fps
                        if grid.keep(t):
                            keep_idx.append(index)
                            keep_ts.append(round(t, 6))
                            tensors.append(torch.from_dlpack(frame))
                        index += 1
                    if tensors:
                        stacked = torch.stack(tensors)  # copies the frames out of the decoder's surfaces
                        self._copied = torch.cuda.Event()
                        self._copied.record()
                self.frames_in_chunk = index - self.start_frame
                if stacked is not None and session.stream is not None:
                    # the caller's work (the current stream: the model's) waits for the copy, and the allocator does
                    # not hand the batch's memory to the decoder's stream again before that work is done with it
                    consumer = torch.cuda.current_stream(stacked.device)
                    consumer.wait_event(self._copied)
                    stacked.record_stream(consumer)
            if stacked is not None:
                yield GpuBatch(keep_idx, keep_ts, stacked)
            if self.end_frame is not None and index >= self.end_frame:
                return
