"""The ``clockwork`` command line. CLIs print for people; the library only logs.

Examples::

    clockwork detect film.mp4 --labels clock --min-score 0.5
    clockwork detect film.mp4 --sample-fps 5 --json result.json
    clockwork samples samples/
    clockwork fetch-model
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from importlib.metadata import entry_points
from pathlib import Path

from clockwork.errors import ClockworkError
from clockwork.settings import DETECT
from clockwork.views import VIEW_NAMES, parse_views

# Other installed packages add subcommands through this entry-point group (the Serve app adds
# ``clockwork serve``), so the core never imports the layers built on it.
COMMANDS_GROUP = "clockwork.commands"

LONG_VIDEO_FRAMES = 300


def hms(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.mmm``."""
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _rate(text: str) -> float | None:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value or None


def _score(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def summary(result) -> str:
    lines = [f"{result.video_file}: {result.width}x{result.height} @ {result.fps:.3f} fps, "
             f"{result.duration_s:.2f} s, {result.frames_processed}/{result.frames_total} frames processed, "
             f"{len(result.segments)} segment(s)"]
    for seg in result.segments:
        shows = f", shows {seg.clock_time.hhmm} (confidence {seg.clock_time.confidence:.2f})" if seg.clock_time else ""
        lines.append(f"  {seg.label:<10} {hms(seg.start_s)} -> {hms(seg.end_s)}  "
                     f"({seg.duration_s:.2f} s, {seg.frames} frames, max score {seg.max_score:.2f}{shows})")
    return "\n".join(lines)


def cmd_detect(args) -> int:
    from tqdm import tqdm

    from clockwork.decode import probe
    from clockwork.detector import Detector
    from clockwork.pipeline import detect_video

    info = probe(args.video)  # bad input fails here, before the model loads
    detector = Detector(args.cfg, args.weights, args.names, device=args.device)
    bar = None
    if info.frames_total > LONG_VIDEO_FRAMES:
        bar = tqdm(total=info.frames_total, unit="frame", desc=Path(args.video).name, file=sys.stderr, disable=None)

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    try:
        result = detect_video(args.video, labels=args.labels or None, min_score=args.min_score,
                              sample_fps=args.sample_fps, views=parse_views(args.views), read_time=args.read_time,
                              detector=detector, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        text = json.dumps(result.to_json(), indent=2)
        if args.json == "-":
            print(text)
        else:
            out = Path(args.json)
            tmp = out.with_name(out.name + ".part")
            tmp.write_text(text + "\n")
            tmp.replace(out)
            print(f"wrote {out}", file=sys.stderr)
    if args.json != "-":
        print(summary(result))
    return 0


def cmd_samples(args) -> int:
    from clockwork.samples import write_samples

    path = write_samples(args.directory, force=args.force)
    print(f"sample library in {Path(args.directory).resolve()} (manifest: {path})")
    return 0


def cmd_fetch_model(args) -> int:
    from clockwork.model_store import fetch_default_model

    root = fetch_default_model(Path(args.model_dir) if args.model_dir else None)
    print(f"default model verified in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clockwork", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="find objects in one video",
                       epilog="example: clockwork detect film.mp4 --labels clock --min-score 0.5 --json -")
    p.add_argument("video")
    p.add_argument("--labels", nargs="+", default=list(DETECT.labels),
                   help=f"class names to keep (default: {' '.join(DETECT.labels)}); 'all' keeps every class")
    p.add_argument("--min-score", type=_score, default=DETECT.min_score, help=f"default: {DETECT.min_score}")
    p.add_argument("--sample-fps", type=_rate, default=DETECT.sample_fps,
                   help=f"decode every frame but detect only N a second; 0: every frame (default: {DETECT.sample_fps or 0:g})")
    p.add_argument("--views", default=",".join(DETECT.views),
                   help=f"views of each frame the model sees, comma-separated from {', '.join(VIEW_NAMES)} "
                        f"(default: {','.join(DETECT.views)})")
    p.add_argument("--read-time", action="store_true",
                   help=f"read the time each clock shows, {DETECT.read_fps:g} times a second of a segment, and fuse one reading per segment")
    p.add_argument("--json", metavar="OUT|-", help="write the result JSON to OUT, or to stdout with -")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--cfg", help="darknet cfg of another model (default: embedded YOLOv3-tiny)")
    p.add_argument("--weights", help="darknet weights matching --cfg")
    p.add_argument("--names", help="class names file matching --cfg")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("samples", help="write the sample library", epilog="example: clockwork samples samples/")
    p.add_argument("directory")
    p.add_argument("--force", action="store_true", help="render again even where files exist")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("fetch-model", help="download and verify the embedded default model (setup does this)")
    p.add_argument("--model-dir", help="default: $CLOCKWORK_MODEL_DIR or ~/.cache/clockwork/models")
    p.set_defaults(func=cmd_fetch_model)

    for entry in entry_points(group=COMMANDS_GROUP):
        entry.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "labels", None) == ["all"]:
        args.labels = None
    try:
        return args.func(args)
    except (ClockworkError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"clockwork: error: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
