"""CPU cost per second of video: the default detection settings against one view of every frame.

    python -m bench.cost                 # the 720p30 and 360p25 sample clips, 3 rounds, alternating

Runs ``detect_video`` on the same clips with each configuration in turn, round after round, so the two
share whatever else the machine is doing, and prints wall seconds per second of video and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.samples import write_samples
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video

CONFIGS = {
    "one view, every frame (before)": {"views": ("full",), "sample_fps": None},
    f"default ({','.join(DETECT.views)} at {DETECT.sample_fps:g} frames/s)": {},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", default=None, help="a rendered sample library (default: render one)")
    args = ap.parse_args()
    root = Path(args.samples) if args.samples else Path(tempfile.mkdtemp())
    if not args.samples:
        write_samples(root)
    clips = [root / "clock_static_720p30.mp4", root / "clock_moving_360p25.mp4"]
    detector = Detector(device="cpu")
    wall = {name: 0.0 for name in CONFIGS}
    video = {name: 0.0 for name in CONFIGS}
    for _ in range(args.rounds):
        for name, overrides in CONFIGS.items():
            for clip in clips:
                t = time.perf_counter()
                result = detect_video(clip, detector=detector, **overrides)
                wall[name] += time.perf_counter() - t
                video[name] += result.duration_s
    names = list(CONFIGS)
    per = {n: wall[n] / video[n] for n in names}
    lines = [
        f"{args.rounds} rounds over {', '.join(c.name for c in clips)} (30 and 25 fps), configurations alternating.",
        "",
        "| configuration | wall s per video s |",
        "|---|---|",
        *[f"| {n} | {per[n]:.3f} |" for n in names],
        "",
        f"Ratio default / before: {per[names[1]] / per[names[0]]:.2f}x.",
    ]
    record("bench/cost.py: CPU cost per second of video", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
