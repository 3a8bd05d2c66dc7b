"""Where the time goes when one process detects every frame of a film: a per-stage breakdown and the top kernels.

    python -m bench.profile --video var/film-30m-1.mp4 --device cuda      # the GPU machine
    python -m bench.profile --video var/film-3m-2.mp4 --device cpu --views full

It runs ``detect_video`` in every-frame mode with the default views on the whole file, with each stage of
the frame-to-detection path timed where it runs:

- **decode wait**: the time the detection loop waits for the next batch from the decoder thread
  (``pipeline.prefetch``); near zero when decoding keeps ahead;
- **prepare**: the views of each frame letterboxed (on the GPU for NVDEC frames), host time and GPU time;
- **model input**, **infer** (host time to launch the network, and its GPU time from CUDA events);
- **postprocess**: boxes out of the raw outputs, thresholds, NMS and the merge of views (host time; the
  first copy to the host waits there for the GPU to finish);
- **result**: frames added to the ``ResultBuilder``.

GPU and decoder utilisation are sampled through NVML every half second. Then the PyTorch profiler looks
at a short stretch (``--profile-s`` seconds of video) and prints the operators with the most GPU time and
the most host time. Timings are printed, never asserted; each run is appended to docs/records/.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time

import torch

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.settings import DETECT
from clockwork.timeline import pipeline
from clockwork.video.frames import FrameReader
from clockwork.video.views import parse_views


class StageTimes:
    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self.events: dict[str, list] = collections.defaultdict(list)

    def wrap(self, name: str, fn, *, gpu: bool = False):
        def timed(*args, **kwargs):
            start = end = None
            if gpu and self.cuda:
                start = torch.cuda.Event(enable_timing=True)
                start.record()
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self.wall[name] += time.perf_counter() - t
            self.calls[name] += 1
            if start is not None:
                end = torch.cuda.Event(enable_timing=True)
                end.record()
                self.events[name].append((start, end))
            return out

        return timed

    def reset(self) -> None:
        self.wall.clear()
        self.calls.clear()
        self.events.clear()

    def gpu_s(self, name: str) -> float | None:
        if not self.events.get(name):
            return None
        torch.cuda.synchronize()
        return sum(a.elapsed_time(b) for a, b in self.events[name]) / 1000


def _waiting(times: StageTimes, original):
    def prefetch(items, depth: int = 2):
        it = iter(original(items, depth))
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                times.wall["decode wait"] += time.perf_counter() - t
            times.calls["decode wait"] += 1
            yield item

    return prefetch


def _utilisation(stop: threading.Event, samples: list[tuple[int, int]]) -> None:
    try:
        from clockwork.gpu_stats import GpuStats

        stats = GpuStats(0)
    except Exception:
        return
    while not stop.wait(0.5):
        r = stats.read()
        samples.append((r.get("gpu_util", 0), r.get("dec_util", 0)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--views", default=None, help="comma-separated views (default: the detection default)")
    ap.add_argument(
        "--unfused", action="store_true", help="keep the batch norms apart from the convolutions (to compare)"
    )
    ap.add_argument("--profile-s", type=float, default=20.0, help="seconds of video the PyTorch profiler looks at")
    args = ap.parse_args()
    views = parse_views(args.views) if args.views else DETECT.views
    detector = Detector(device=args.device, fuse=not args.unfused)
    cuda = detector.device.type == "cuda"
    times = StageTimes(cuda)
    detector.prepare = times.wrap("prepare", detector.prepare, gpu=True)
    detector.model_input = times.wrap("model input", detector.model_input, gpu=True)
    detector.infer = times.wrap("infer", detector.infer, gpu=True)
    detector.postprocess = times.wrap("postprocess", detector.postprocess)
    original_add = pipeline.ResultBuilder.add
    pipeline.ResultBuilder.add = times.wrap("result", original_add)
    original_prefetch = pipeline.prefetch
    pipeline.prefetch = _waiting(times, original_prefetch)

    # warm up (CUDA context, cuDNN autotuning) on the first seconds, untimed
    with FrameReader(args.video, device=detector.device, end_s=2.0) as reader:
        for batch in reader:
            detector.detect_batch(batch, views=views)
    times.reset()

    stop, util = threading.Event(), []
    sampler = threading.Thread(target=_utilisation, args=(stop, util), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    result = pipeline.detect_video(args.video, detector=detector, sample_fps=0, views=views)
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    stop.set()
    pipeline.ResultBuilder.add, pipeline.prefetch = original_add, original_prefetch
    frames = result.frames_processed
    stages = ("decode wait", "prepare", "model input", "infer", "postprocess", "result")
    kind = f"{detector.dtype}{', batch norms apart' if args.unfused else ''}"
    lines = [
        f"Every frame of {args.video} ({frames} frames, {result.duration_s:.0f} s of video), views {','.join(views)}, "
        f"device {detector.device} ({kind}): **{total:.1f} s, {frames / total:.0f} frames/s**.",
        "",
        "| stage | calls | host time (s) | share of the run | GPU time (s) | ms a frame (host) |",
        "|---|---|---|---|---|---|",
    ]
    for name in stages:
        gpu = times.gpu_s(name) if cuda else None
        lines.append(
            f"| {name} | {times.calls[name]} | {times.wall[name]:.2f} | {times.wall[name] / total:.0%} | "
            f"{'-' if gpu is None else f'{gpu:.2f}'} | {times.wall[name] * 1000 / max(frames, 1):.3f} |"
        )
    rest = total - sum(times.wall[n] for n in stages)
    lines.append(f"| other (loop, progress, segments) | - | {rest:.2f} | {rest / total:.0%} | - | - |")
    if util:
        gpu_util = sum(u for u, _ in util) / len(util)
        dec_util = sum(d for _, d in util) / len(util)
        lines += [
            "",
            f"NVML over the run: GPU busy {gpu_util:.0f}%, decoders busy {dec_util:.0f}% ({len(util)} samples).",
        ]

    # the PyTorch profiler over a short stretch: which operators take the GPU's and the host's time
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with (
        profile(activities=activities) as prof,
        FrameReader(args.video, device=detector.device, end_s=args.profile_s) as reader,
    ):
        for batch in reader:
            detector.detect_batch(batch, views=views)
        if cuda:
            torch.cuda.synchronize()
    averages = prof.key_averages()
    lines += [
        "",
        f"PyTorch profiler, the first {args.profile_s:g} s of video (decode and detect, no result building), "
        f"top operators by {'GPU' if cuda else 'host'} time:",
        "",
        "| operator | calls | self GPU ms | self host ms |",
        "|---|---|---|---|",
    ]

    def device_us(e) -> float:  # the attribute's name changed across PyTorch versions
        return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))

    top = sorted(averages, key=device_us if cuda else (lambda e: e.self_cpu_time_total), reverse=True)[:12]
    for e in top:
        lines.append(f"| `{e.key[:70]}` | {e.count} | {device_us(e) / 1000:.1f} | {e.self_cpu_time_total / 1000:.1f} |")
    record("bench/profile.py: where the time goes, every frame in one process", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
