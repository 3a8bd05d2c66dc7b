"""Where a video becomes batches of frames, on the CPU or the GPU: one path for every caller.

    with FrameReader("film.mp4", device="cuda", sample_fps=5) as reader:
        for batch in reader:          # FrameBatch: indexes, timestamps, uint8 [n, H, W, 3] RGB
            ...                        # numpy on the CPU path, a CUDA tensor on the NVDEC path

``FrameReader`` decides NVDEC or the CPU inside (torchcodec's ``VideoDecoder(device=...)`` is the
pattern). NVDEC serves a file when the device is CUDA, PyNvVideoCodec is installed, the codec has a
hardware decoder and the file is not rotated; otherwise frames come from PyAV on the CPU, and when a
GPU was asked for, the reason is logged and kept in ``fallback_reason`` (a metric label for callers).
``detect_video``, the Serve detector, ``jobs.split`` and the benchmarks all read frames through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clockwork._logging import logger
from clockwork.settings import DETECT, LIMITS
from clockwork.video.decode import VideoDecoder, VideoInfo

if TYPE_CHECKING:
    import torch


@dataclass
class FrameBatch:
    """Frames of one video. ``indexes`` count every decoded frame from 0; ``timestamps`` are seconds."""

    indexes: list[int]
    timestamps: list[float]
    data: Any  # uint8 [n, H, W, 3] RGB: np.ndarray on the CPU path, torch.Tensor on the device otherwise

    def __len__(self) -> int:
        return len(self.indexes)

    @property
    def on_gpu(self) -> bool:
        return not isinstance(self.data, np.ndarray)


def _parse_device(device: str | torch.device | None) -> tuple[str, int]:
    """``"cuda:1"`` or ``torch.device("cuda", 1)`` -> ("cuda", 1); without torch for CPU callers."""
    text = "cpu" if device is None else str(device)
    kind, _, index = text.partition(":")
    return kind, int(index or 0)


class FrameReader:
    """Decode ``[start_s, end_s)`` of ``path`` into :class:`FrameBatch` es of at most ``batch_size`` frames.

    ``device``: where the caller wants the frames (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch
    device). ``nvdec=False`` keeps decoding on the CPU whatever the device. ``info`` (what ``probe``
    gives) lets a caller that already has it skip opening the file twice (a chunk of a long video). ``nvdec_reuse``:
    take
    an NVDEC decoder an earlier reader of this process left, and leave this one for the next
    (``clockwork.video.nvdec.DecoderPool``).
    ``nvdec_stream``: the NVDEC decoder works on a CUDA stream of its own, not the model's (``DETECT.nvdec_stream``).
    ``max_pixels``: a frame larger than this fails with VideoTooLargeError before it is converted (the CPU decoder
    checks every frame: a stream may change size mid-way). After iterating, ``frames_decoded`` counts the frames
    decoded inside the range, sampled or not.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device | None = "cpu",
        sample_fps: float | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        batch_size: int | None = None,
        nvdec: bool = DETECT.nvdec,
        info: VideoInfo | None = None,
        nvdec_reuse: bool = DETECT.nvdec_reuse,
        nvdec_stream: bool = DETECT.nvdec_stream,
        max_pixels: int | None = LIMITS.max_frame_pixels,
    ):
        self.path = str(path)
        self.device_type, self.device_index = _parse_device(device)
        self.sample_fps = sample_fps
        self.start_s, self.end_s = start_s, end_s
        cpu_dec = None
        if info is None:  # open the CPU decoder once: it is the probe, and the decoder when NVDEC cannot serve
            cpu_dec = VideoDecoder(path, sample_fps=sample_fps, start_s=start_s, end_s=end_s, max_pixels=max_pixels)
            info = cpu_dec.info
        self.info = info
        problem = self.nvdec_problem(self.info, self.device_type) if nvdec else "disabled"
        self.decoder = "cpu" if problem else "nvdec"
        # Why a GPU caller got CPU frames; None when it did not ask for a GPU or got NVDEC.
        self.fallback_reason = problem if problem and self.device_type == "cuda" else None
        if self.fallback_reason:
            logger.warning("decoding %s on the CPU instead of NVDEC: %s", self.path, problem)
        default_batch = DETECT.gpu_batch if self.decoder == "nvdec" else DETECT.cpu_batch
        self.batch_size = int(batch_size or default_batch)
        if self.batch_size < 1:
            raise ValueError(f"Invalid batch_size ({batch_size}). Supported values are integers >= 1.")
        if self.decoder == "nvdec":
            from clockwork.video.nvdec import GpuVideoDecoder

            if cpu_dec is not None:
                cpu_dec.close()
            self._dec = GpuVideoDecoder(
                path,
                self.info,
                gpu_id=self.device_index,
                batch=self.batch_size,
                sample_fps=sample_fps,
                start_s=start_s,
                end_s=end_s,
                reuse=nvdec_reuse,
                stream=nvdec_stream,
            )
        else:
            self._dec = cpu_dec or VideoDecoder(
                path, sample_fps=sample_fps, start_s=start_s, end_s=end_s, max_pixels=max_pixels
            )
            self.info = self._dec.info  # the CPU decoder knows the rotation from the first frame

    @staticmethod
    def nvdec_problem(info: VideoInfo, device_type: str) -> str | None:
        """None when NVDEC can decode this file on this device type, else a short reason (a metric label)."""
        if device_type != "cuda":
            return "no_cuda"
        from clockwork.video.nvdec import gpu_decode_problem

        return gpu_decode_problem(info)

    @property
    def frames_decoded(self) -> int:
        return self._dec.frames_in_chunk

    def __iter__(self) -> Iterator[FrameBatch]:
        if self.decoder == "nvdec":
            for b in self._dec.batches():
                yield FrameBatch(b.indexes, b.timestamps, b.frames)
            return
        for frames in self._dec.batches(self.batch_size):
            yield FrameBatch(
                [f.index for f in frames], [f.timestamp_s for f in frames], np.stack([f.image for f in frames])
            )

    def close(self) -> None:
        self._dec.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
