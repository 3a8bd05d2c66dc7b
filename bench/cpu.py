"""CPU throughput of `clockwork detect` against a seed-style loop, and PyAV against OpenCV decoding.

    python bench/cpu.py [--seconds 10] [--size 1280x720]

Renders one H.264 test file with a drawn clock (libx264), then measures, side by side in one run:
1. decode only: PyAV (our decoder, RGB + timestamps) vs cv2.VideoCapture;
2. seed-style loop: cv2.VideoCapture one frame at a time into the same model at batch 1;
3. ours: clockwork.detect_video (PyAV in a prefetch thread, batch 16).
Prints frames/s and ratios and appends the run to docs/records/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.samples import draw_clock
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video
from clockwork.video import ffmpeg
from clockwork.video.decode import VideoDecoder


def make_video(path: Path, seconds: float, size: str) -> None:
    png = path.with_suffix(".png")
    cv2.imwrite(str(png), cv2.cvtColor(draw_clock(240), cv2.COLOR_RGBA2BGRA))
    w, h = size.split("x")
    ffmpeg.run(
        [
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"gradients=s={w}x{h}:r=30:d={seconds}:speed=0.02",
            "-loop",
            "1",
            "-i",
            str(png),
            "-filter_complex",
            "[0:v][1:v]overlay=x='100+t*40':y=100:shortest=1,format=yuv420p",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "8M",
            str(path),
        ]
    )


def seed_style(path: Path, detector: Detector) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        detector.detect([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)], min_score=DETECT.min_score, labels=list(DETECT.labels))
        n += 1
    cap.release()
    return n


def decode_pyav(path: Path) -> int:
    with VideoDecoder(path) as dec:
        return sum(1 for _ in dec)


def decode_cv2(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def timed(fn, *args):
    t = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    args = ap.parse_args()
    detector = Detector(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        make_video(path, args.seconds, args.size)
        detect_video(path, detector=detector, sample_fps=2)  # warm-up
        rows = {}
        rows["decode: PyAV (ours)"] = timed(decode_pyav, path)
        rows["decode: cv2.VideoCapture"] = timed(decode_cv2, path)
        rows["detect: seed-style cv2 loop, batch 1"] = timed(seed_style, path, detector)
        rows["detect: clockwork detect_video, batch 16"] = timed(
            lambda p: detect_video(p, detector=detector).frames_processed, path
        )
    fps = {k: n / dt for k, (n, dt) in rows.items()}
    lines = [
        f"{args.seconds:g} s of {args.size} H.264 at 30 fps (8 Mb/s, libx264), YOLOv3-tiny at 416, "
        f"torch threads {torch.get_num_threads()}.",
        "",
        "| stage | frames | seconds | frames/s |",
        "|---|---|---|---|",
    ]
    for k, (n, dt) in rows.items():
        lines.append(f"| {k} | {n} | {dt:.2f} | {fps[k]:.1f} |")
    lines += [
        "",
        f"- PyAV / OpenCV decode: {fps['decode: PyAV (ours)'] / fps['decode: cv2.VideoCapture']:.2f}x",
        "- ours / seed-style: "
        f"{fps['detect: clockwork detect_video, batch 16'] / fps['detect: seed-style cv2 loop, batch 1']:.2f}x",
    ]
    record("CPU: clockwork detect vs seed-style loop (bench/cpu.py)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
