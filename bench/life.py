"""How often the default sees a clock in Conway's Game of Life: false segments over many random grids.

    python -m bench.life                      # seeds 0-19, CPU

The sample library's ``distractor_life_25.mp4`` is ffmpeg's ``life`` source on one fixed grid (seed 3). This renders
the same clip (480x272, 25 frames/s, 4 s, the library's colours) for each seed and counts false segments at the default,
with
the dials unread (nothing checked) and with COCO's heads at the old default. No seed is chosen here: every seed of
the range counts.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench._record import record
from bench.digital import CONFIGS  # the same three configs side by side
from clockwork.detect.detector import Detector
from clockwork.samples import SAMPLES
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video
from clockwork.video.ffmpeg import run

# the sample library's clip; each seed here replaces its fixed one
LIFE = next(clip for clip in SAMPLES if clip.name == "distractor_life_25.mp4")


def render(out: Path, seed: int) -> Path:
    source = re.sub(r":seed=\d+", "", LIFE.background.format(w=LIFE.width, h=LIFE.height, r=LIFE.fps)) + f":seed={seed}"
    run(
        [
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
            "-t",
            f"{LIFE.duration_s:g}",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            str(out),
        ]
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="var/life", help="where the clips are rendered (again each run)")
    ap.add_argument("--seeds", default="0-19", help="a range A-B of the life source's seeds, both ends included")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    clips = {seed: render(data / f"life-{seed}.mp4", seed) for seed in range(first, last + 1)}
    detectors: dict = {}
    lines = [
        f"{len(clips)} clips of ffmpeg's life source (480x272, 25 frames/s, 4 s; seeds {first}-{last}), no clock in "
        "any; "
        f"device {args.device}.",
        "",
        "| config | clips with a false segment | false segments | seeds |",
        "|---|---|---|---|",
    ]
    for name, overrides in CONFIGS.items():
        overrides = dict(overrides)
        head = overrides.pop("head", DETECT.head)
        if head not in detectors:
            detectors[head] = Detector(device=args.device, half=args.device != "cpu", head=head)
        found = {
            seed: len(detect_video(path, detector=detectors[head], **overrides).segments)
            for seed, path in clips.items()
        }
        bad = [seed for seed, n in found.items() if n]
        lines.append(
            f"| {name} | {len(bad)}/{len(clips)} | {sum(found.values())} | {', '.join(map(str, bad)) or '-'} |"
        )
        print(lines[-1], flush=True)
    record("bench/life.py: false segments on Game of Life grids", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
