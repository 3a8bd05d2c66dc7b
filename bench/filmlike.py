"""A film-like copy of a generated film: film grain, encoded at a film's bitrate (runs where there is no ffmpeg binary).

    python -m bench.filmlike SRC DST [--seconds 120] [--mbps 8] [--grain 12]

The generated films are flat drawings: x264 packs a 1080p30 one into about 0.2 Mb/s, where a film on disc or from a
camera is several Mb/s. NVDEC's speed depends on the bitrate (the device README measured 2,370 frames/s for an
8 Mb/s 1080p30 stream; the generated film decodes near 4,600), so a decode ceiling measured on the flat film is one
that real films do not reach. This copies the first ``--seconds`` of ``SRC`` through libavfilter's temporal
``noise`` (grain a camera or a film scan would have) into H.264 (libx264, ``--preset``) at ``--mbps`` megabits a
second, the same frames otherwise: the clocks stay where they were. PyAV's wheel carries libx264 and libavfilter, so
it runs on the GPU machine, which has neither an ffmpeg binary nor an encoder of its own.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from fractions import Fraction
from pathlib import Path


def write_filmlike(
    src: str | Path,
    dst: str | Path,
    *,
    seconds: float = 120.0,
    mbps: float = 8.0,
    grain: int = 12,
    preset: str = "veryfast",
) -> dict:
    """Write the film-like copy; returns its frames, seconds of work and measured bitrate."""
    import av

    t0 = time.perf_counter()
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or Fraction(30)
        enc = out.add_stream("libx264", rate=rate, options={"preset": preset})
        enc.width, enc.height, enc.pix_fmt = vin.width, vin.height, "yuv420p"
        enc.bit_rate = int(mbps * 1e6)
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(template=vin),
            graph.add("noise", f"alls={grain}:allf=t"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        for a, b in itertools.pairwise(chain):
            a.link_to(b)
        graph.configure()
        limit = int(round(seconds * float(rate)))
        for frame in inp.decode(vin):
            if frames >= limit:
                break
            graph.push(frame)
            grained = graph.pull()
            grained.pts, grained.time_base = frames, 1 / rate
            out.mux(enc.encode(grained))
            frames += 1
        out.mux(enc.encode(None))
    size = Path(dst).stat().st_size
    return {
        "frames": frames,
        "seconds": frames / float(rate),
        "mbps": size * 8 / (frames / float(rate)) / 1e6,
        "encode_s": time.perf_counter() - t0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--seconds", type=float, default=120.0, help="how much of SRC, from its start")
    ap.add_argument("--mbps", type=float, default=8.0, help="the target bitrate, megabits a second")
    ap.add_argument("--grain", type=int, default=12, help="libavfilter noise strength (alls), 0-100")
    ap.add_argument("--preset", default="veryfast", help="libx264 preset")
    args = ap.parse_args()
    if not Path(args.src).is_file():
        ap.error(f"no such file: {args.src}")
    r = write_filmlike(args.src, args.dst, seconds=args.seconds, mbps=args.mbps, grain=args.grain, preset=args.preset)
    print(
        f"{args.dst}: {r['frames']} frames ({r['seconds']:.1f} s) at {r['mbps']:.2f} Mb/s, written in "
        f"{r['encode_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
