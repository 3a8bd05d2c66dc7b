"""Split benchmark: fast seek (-ss before -i) against the original's seek after -i, same segments and profile.

    python bench/split.py [--minutes 10] [--segments 20] [--size 640x360]

Renders one source with libx264, cuts the same segments (3 s each, spread evenly over the file) both
ways into the normalised snippet profile, one ffmpeg at a time, and appends the run to docs/records/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench._record import record
from clockwork.remix.clips import Profile, cut_command, seek_after_input_command
from clockwork.video import ffmpeg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "source.mp4"
        t = time.perf_counter()
        ffmpeg.run(
            [
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=s={args.size}:r=30:d={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "250",
                "-c:a",
                "aac",
                "-shortest",
                str(src),
            ]
        )
        render_s = time.perf_counter() - t
        segs = [
            ((i + 0.5) * seconds / args.segments, (i + 0.5) * seconds / args.segments + 3.0)
            for i in range(args.segments)
        ]
        profile = Profile()
        times = {}
        for label, build in (
            ("fast seek (-ss before -i)", cut_command),
            ("original (-ss after -i)", seek_after_input_command),
        ):
            t = time.perf_counter()
            for i, (a, b) in enumerate(segs):
                ffmpeg.run(build(src, a, b, Path(tmp) / f"{i}.mp4", has_audio=True, profile=profile))
            times[label] = time.perf_counter() - t
    fast, slow = times["fast seek (-ss before -i)"], times["original (-ss after -i)"]
    lines = [
        f"Source: {args.minutes:g} min of {args.size} H.264 30 fps (libx264 ultrafast, GOP 250, rendered in "
        f"{render_s:.0f} s), "
        f"{args.segments} segments of 3 s spread evenly; output profile 1280x720 30 fps H.264 + AAC, libx264 veryfast, "
        f"{profile.threads} ffmpeg threads, one cut at a time.",
        "",
        "| command | total s | s per snippet |",
        "|---|---|---|",
    ]
    for k, v in times.items():
        lines.append(f"| {k} | {v:.1f} | {v / args.segments:.2f} |")
    lines += ["", f"- original / fast seek: {slow / fast:.1f}x"]
    record("Split: fast seek vs seek after input (bench/split.py)", lines, modules=())
    return 0


if __name__ == "__main__":
    sys.exit(main())
