"""Decoding on the GPU with NVDEC (PyNvVideoCodec), frames straight into torch without a host copy.

``GpuVideoDecoder`` wraps PyNvVideoCodec's ``ThreadedDecoder`` with ``use_device_memory=True`` and
RGB output, so NV12->RGB runs on the GPU; each decoded frame reaches torch through DLPack. The
letterbox of every view runs on the GPU too (``Detector.prepare``). Where NVDEC cannot serve a file
(no GPU, no PyNvVideoCodec, a codec the card cannot decode in hardware such as AV1 on Hopper, a
rotated file), :func:`gpu_decode_problem` names the reason and ``clockwork.frames.FrameReader``
falls back to the CPU path, visibly (a log line and a metric label). Use ``FrameReader``; this module
is its NVDEC half.

Timestamps on this path are ``frame index / average fps``: exact for constant-frame-rate files.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from clockwork.decode import SampleGrid, VideoInfo

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
# frames/s (bench/gpu.py's direct stage compares them; docs/BENCHMARKS.md, session 8).
SHARE_CONTEXT = True


@functools.cache
def primary_context(gpu_id: int) -> int:
    """The handle of GPU ``gpu_id``'s primary CUDA context (the one PyTorch runs in), retained once per process."""
    import ctypes

    torch.cuda.init()
    lib = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    for call, args in (("cuDeviceGet", (ctypes.byref(dev), gpu_id)), ("cuDevicePrimaryCtxRetain", (ctypes.byref(ctx), dev))):
        status = getattr(lib, call)(*args)
        if status != 0:
            raise RuntimeError(f"{call} failed on GPU {gpu_id} (CUresult {status})")
    return int(ctx.value)


@dataclass
class GpuBatch:
    indexes: list[int]
    timestamps: list[float]
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the GPU


class GpuVideoDecoder:
    """Decode ``[start_s, end_s)`` of a file on GPU ``gpu_id`` in batches of ``batch`` frames."""

    def __init__(self, path: str | Path, info: VideoInfo, *, gpu_id: int = 0, batch: int = 32,
                 sample_fps: float | None = None, start_s: float = 0.0, end_s: float | None = None):
        import PyNvVideoCodec as nvc

        self.info = info
        self.fps = info.fps or 30.0
        self.batch = batch
        self.sample_fps = sample_fps
        self.start_frame = int(math.ceil(start_s * self.fps - 1e-6))
        self.end_frame = None if end_s is None else int(math.ceil(end_s * self.fps - 1e-6))
        context = {"cuda_context": primary_context(gpu_id)} if SHARE_CONTEXT else {}
        self._dec = nvc.ThreadedDecoder(str(path), buffer_size=batch * 2, gpu_id=gpu_id, use_device_memory=True,
                                        output_color_type=nvc.OutputColorType.RGB, start_frame=self.start_frame, **context)
        self.frames_in_chunk = 0  # frames decoded inside the chunk so far (the CPU decoder names it the same)

    def close(self) -> None:
        dec, self._dec = getattr(self, "_dec", None), None
        if dec is not None:
            try:
                dec.end()
            except Exception:  # already ended
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def batches(self) -> Iterator[GpuBatch]:
        """Yield batches; frames are copied out of the decoder's buffers before the next fetch."""
        index = self.start_frame
        grid = SampleGrid(self.sample_fps, index / self.fps)
        while True:
            frames = self._dec.get_batch_frames(self.batch)
            if not frames:
                return
            keep_idx, keep_ts, tensors = [], [], []
            for frame in frames:
                if self.end_frame is not None and index >= self.end_frame:
                    break
                t = index / self.fps
                if grid.keep(t):
                    keep_idx.append(index)
                    keep_ts.append(round(t, 6))
                    tensors.append(torch.from_dlpack(frame))
                index += 1
            self.frames_in_chunk = index - self.start_frame
            if tensors:
                # stack copies the frames out of the decoder's surfaces
                yield GpuBatch(keep_idx, keep_ts, torch.stack(tensors))
            if self.end_frame is not None and index >= self.end_frame:
                return
