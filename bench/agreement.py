"""Why do the CPU and GPU paths disagree on a frame? Swap one stage at a time and print the boxes.

    python -m bench.agreement --video samples/clock_moving_360p25.mp4 --frames 33

For each frame it prints the detections of six pipelines that differ in one stage each: decoding
(PyAV on the CPU vs NVDEC), letterbox (cv2 on the host vs torch on the GPU), precision (fp32 vs
fp16) and device, plus the per-channel difference between the two decoders' RGB frames. It needs a
GPU; nothing here is timed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from clockwork.detect.detector import Detector
from clockwork.video.frames import FrameBatch, FrameReader


def frames_of(path: str, device: str, wanted: set[int]) -> dict[int, FrameBatch]:
    out = {}
    with FrameReader(path, device=device, batch_size=32) as reader:
        print(f"{device}: decoder {reader.decoder}")
        for batch in reader:
            for k, i in enumerate(batch.indexes):
                if i in wanted:
                    out[i] = FrameBatch(
                        [i],
                        [batch.timestamps[k]],
                        batch.data[k : k + 1].clone() if batch.on_gpu else batch.data[k : k + 1].copy(),
                    )
    return out


def show(name: str, dets) -> None:
    boxes = (
        "; ".join(f"{d.label} {d.score:.3f} x={d.x:.1f} y={d.y:.1f} w={d.w:.1f} h={d.h:.1f}" for d in dets) or "none"
    )
    print(f"  {name:<44} {boxes}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, nargs="+", default=[33])
    ap.add_argument("--min-score", type=float, default=0.1, help="low, so near-threshold boxes show too")
    args = ap.parse_args()
    wanted = set(args.frames)
    cpu_frames = frames_of(args.video, "cpu", wanted)
    gpu_frames = frames_of(args.video, "cuda", wanted)
    det_cpu = Detector(device="cpu")
    det32 = Detector(device="cuda", half=False)
    det16 = Detector(device="cuda", half=True)
    kw = {"labels": ["clock"], "min_score": args.min_score}
    for i in args.frames:
        c, g = cpu_frames[i], gpu_frames[i]
        host_of_gpu = FrameBatch(g.indexes, g.timestamps, g.data.cpu().numpy())
        diff = np.abs(c.data.astype(np.int16) - host_of_gpu.data.astype(np.int16))
        print(
            f"frame {i} t={c.timestamps[0]:.3f}: |PyAV RGB - NVDEC RGB| mean per channel "
            f"{diff.reshape(-1, 3).mean(0).round(2).tolist()}, max {int(diff.max())}, "
            f"pixels off by >8: {float((diff.max(-1) > 8).mean()) * 100:.1f}%"
        )
        show("CPU decode, host letterbox, CPU fp32", det_cpu.detect_batch(c, **kw)[0].detections)
        show("NVDEC decode, host letterbox, CPU fp32", det_cpu.detect_batch(host_of_gpu, **kw)[0].detections)
        show("CPU decode, host letterbox, GPU fp32", det32.detect_batch(c, **kw)[0].detections)
        show("CPU decode, host letterbox, GPU fp16", det16.detect_batch(c, **kw)[0].detections)
        on_dev = FrameBatch(c.indexes, c.timestamps, torch.from_numpy(c.data).cuda())
        show("CPU decode, GPU letterbox, GPU fp32", det32.detect_batch(on_dev, **kw)[0].detections)
        show("NVDEC decode, GPU letterbox, GPU fp32", det32.detect_batch(g, **kw)[0].detections)
        show("NVDEC decode, GPU letterbox, GPU fp16 (the GPU path)", det16.detect_batch(g, **kw)[0].detections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
