"""Scan mode against every-frame mode on a long generated film with clocks in known places.

    python -m bench.scan --minutes 30                    # the GPU machine: both modes on the whole film
    python -m bench.scan --minutes 3 --views full        # this CPU machine: every frame of 30 min would take hours

Renders the film once (``clockwork.samples.write_film``: 1280x720 at 25 fps, clocks of six faces in 3-20 s
windows), then runs ``detect_video`` in each mode, one after the other in this one process, and prints for
each: frames examined, wall time, frames/s, video seconds per second and video hours per device-hour, and how
far its segment boundaries are from the truth and from every-frame mode's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.samples import write_film
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video

MODES = {"every frame": {"scan": False, "sample_fps": None}, "scan": {"scan": True}}


def boundary_errors(
    found: list[tuple[float, float]], truth: list[tuple[float, float]]
) -> tuple[float | None, int, int]:
    """(largest start or end difference over the truth intervals matched by overlap, missed, extra)."""
    worst, matched = None, set()
    missed = 0
    for a, b in truth:
        best = max(range(len(found)), key=lambda i: min(b, found[i][1]) - max(a, found[i][0]), default=None)
        if best is None or min(b, found[best][1]) - max(a, found[best][0]) <= 0:
            missed += 1
            continue
        matched.add(best)
        err = max(abs(found[best][0] - a), abs(found[best][1] - b))
        worst = err if worst is None else max(worst, err)
    return worst, missed, len(found) - len(matched)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--film",
        default=None,
        help="where the film is kept (rendered when missing; default var/film-<minutes>m-<seed>.mp4)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--views", default=",".join(DETECT.views))
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    film = Path(args.film or f"var/film-{args.minutes:g}m-{args.seed}.mp4")
    truth_path = film.with_suffix(".json")
    film.parent.mkdir(parents=True, exist_ok=True)
    if not (film.exists() and truth_path.exists()):
        t = time.perf_counter()
        truth_path.write_text(json.dumps(write_film(film, args.minutes, seed=args.seed)))
        print(f"rendered {film} in {time.perf_counter() - t:.0f} s")
    truth = json.loads(truth_path.read_text())
    intervals = [tuple(w) for w in truth["clock_intervals"]]
    views = args.views.split(",")
    detector = Detector(device=args.device)
    detect_video(film, detector=detector, views=views, sample_fps=1.0)  # warm-up (model load, first kernels)
    rows, found_by = [], {}
    for name in args.modes.split(","):
        t = time.perf_counter()
        result = detect_video(film, detector=detector, views=views, **MODES[name])
        wall = time.perf_counter() - t
        found = [(s.start_s, s.end_s) for s in result.segments if s.label == "clock"]
        found_by[name] = found
        worst, missed, extra = boundary_errors(found, intervals)
        rows.append((name, result.frames_processed, wall, result.duration_s, worst, missed, extra, result.scan))
    lines = [
        f"film: {film.name}, {truth['duration_s'] / 60:g} min at {truth['fps']} fps, {len(intervals)} clock intervals; "
        f"device {detector.device}; views {','.join(views)}",
        "",
        "| mode | frames examined | wall s | frames/s | video s per s | video h per device-h | worst boundary vs "
        "truth (s) | missed | extra |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, frames, wall, dur, worst, missed, extra, _ in rows:
        lines.append(
            f"| {name} | {frames:,} | {wall:.1f} | {frames / wall:.1f} | {dur / wall:.2f} | {dur / wall:.1f} | "
            f"{'-' if worst is None else f'{worst:.3f}'} | {missed} | {extra} |"
        )
    by = {r[0]: r for r in rows}
    if "scan" in by and "every frame" in by:
        worst, missed, extra = boundary_errors(found_by["scan"], found_by["every frame"])
        lines += [
            "",
            f"scan examined {by['every frame'][1] / by['scan'][1]:.1f}x fewer frames and ran "
            f"{by['every frame'][2] / by['scan'][2]:.1f}x faster; its boundaries are within "
            f"{'-' if worst is None else f'{worst:.3f}'} s of every-frame mode's ({missed} missed, {extra} extra).",
        ]
    if "scan" in by and by["scan"][7]:
        scan = by["scan"][7]
        lines.append(
            f"scan: {scan['frames_coarse']:,} coarse frames at {scan['coarse_fps']:g}/s, {scan['frames_refined']:,} "
            f"refined in {len(scan['refined'])} windows"
        )
    print("\n".join(lines))
    record(f"Scan against every frame, {truth['duration_s'] / 60:g}-minute film", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
