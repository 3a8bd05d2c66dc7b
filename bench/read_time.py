"""How well the clock reader reads: held-out rendered clocks and the sample library's clocks.

    python -m bench.read_time                    # CPU, 2000 held-out clocks
    python -m bench.read_time --n 500 --device cuda

The held-out set is drawn by ``clockwork.training.train_reader.render_sample`` from the "heldout" style family
(typefaces, palettes, arrow hands and octagonal dials that training never draws), with the same
degradations and 15% unreadable crops. It prints the share read exactly, within +-1 and +-5 minutes
and the mean circular error on the readable ones (also for a second held-out seed and for the detector's
"eval" family, whose markers and hands range wider: bars, dots, no numerals, line and tapered hands);
accuracy against coverage as the readable threshold and then the confidence threshold rise; the sample
library's clocks (whose times ``clockwork.samples`` knows) read through ``clockwork detect --read-time``;
and milliseconds per crop.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench._record import record
from clockwork.timeread.clocktime import circular_error
from clockwork.timeread.reader import ClockReader
from clockwork.training.train_reader import heldout_set


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", default=None, help="a rendered sample library (default: render one into a temp dir)")
    args = ap.parse_args()
    reader = ClockReader(device=args.device)
    crops, truth, readable = heldout_set(args.n)
    t = time.perf_counter()
    readings = read_all(reader, crops)
    batched_ms = (time.perf_counter() - t) * 1000 / len(crops)
    t = time.perf_counter()
    for crop in crops[:100]:
        reader.read([crop])
    single_ms = (time.perf_counter() - t) * 1000 / 100
    ok = readable == 1
    err = errors(readings, truth)
    conf = np.array([r.confidence for r in readings])
    rd = np.array([r.readable for r in readings])
    lines = [
        f"Held-out rendered set: {args.n} crops ({int(ok.sum())} readable, {int((~ok).sum())} unreadable by "
        "construction), "
        f"weights {reader.sha256[:12]}, device {args.device}.",
        "",
        "| set | exact | within 1 min | within 5 min | mean error (min) |",
        "|---|---|---|---|---|",
        accuracy_row("held-out", err[ok]),
    ]
    for name, seed, split in (
        ("held-out, another seed (54321)", 54321, "heldout"),
        ("eval family (any markers and hands, seed 777)", 777, "eval"),
    ):
        other, other_truth, other_readable = heldout_set(args.n, seed=seed, split=split)
        lines.append(accuracy_row(name, errors(read_all(reader, other), other_truth)[other_readable == 1]))
    lines += [
        "",
        "Accuracy (within 1 min, over crops kept) against coverage (crops kept / readable crops):",
        "",
        "| keep when | threshold | coverage | within 1 min | unreadable crops kept |",
        "|---|---|---|---|---|",
    ]
    for name, score in (("readable >=", rd), ("confidence >=", conf)):
        for th in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95):
            keep = score >= th
            kept = keep & ok
            acc = (err[kept] <= 1).mean() if kept.any() else float("nan")
            lines.append(f"| {name} | {th:.2f} | {kept.sum() / ok.sum():.3f} | {acc:.3f} | {int((keep & ~ok).sum())} |")
    lines += ["", f"Speed: {single_ms:.1f} ms per crop one at a time, {batched_ms:.2f} ms per crop in batches of 256."]
    lines += ["", *sample_library(args.samples, reader)]
    record("bench/read_time.py: the clock reader", lines)
    return 0


def read_all(reader: ClockReader, crops: np.ndarray) -> list:
    return [r for i in range(0, len(crops), 256) for r in reader.read(list(crops[i : i + 256]))]


def errors(readings: list, truth: np.ndarray) -> np.ndarray:
    return np.array([circular_error(r.minutes, m) for r, m in zip(readings, truth, strict=True)])


def accuracy_row(name: str, e: np.ndarray) -> str:
    """One row of the accuracy table from the errors (minutes) on the readable crops."""
    return (
        f"| {name}, readable | {(e == 0).mean():.3f} | {(e <= 1).mean():.3f} | {(e <= 5).mean():.3f} | {e.mean():.1f} |"
    )


def sample_library(directory: str | None, reader: ClockReader) -> list[str]:
    """Every sample-library clock through detect_video(read_time=True): the fused reading of its segment."""
    import tempfile
    from pathlib import Path

    from clockwork.detect.detector import Detector
    from clockwork.samples import SAMPLES, write_samples
    from clockwork.timeline.pipeline import detect_video

    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="clockwork-samples-"))
    if not directory:
        write_samples(root)
    detector = Detector(device=reader.device)
    rows, within = ["| sample | clock shows | read | error (min) | confidence |", "|---|---|---|---|---|"], 0
    total = 0
    for spec in SAMPLES:
        if spec.duplicate_of or not spec.clocks:
            continue
        result = detect_video(root / spec.name, detector=detector, read_time=True, clock_reader=reader)
        for clock, seg in zip(spec.clocks, result.segments, strict=False):
            truth = (clock.hour % 12) * 60 + clock.minute
            got = seg.clock_time
            err = circular_error(got.minutes, truth) if got else None
            within += err is not None and err <= 1
            total += 1
            rows.append(
                f"| {spec.name} {clock.start_s:g}-{clock.end_s:g} s | {clock.hour}:{clock.minute:02d} | "
                f"{got.hhmm if got else 'unread'} | {err if err is not None else '-'} | "
                f"{got.confidence if got else 0:.2f} |"
            )
    return [
        f"Sample library: {within} of {total} clocks read within 1 minute (one fused reading per segment).",
        "",
        *rows,
    ]


if __name__ == "__main__":
    sys.exit(main())
