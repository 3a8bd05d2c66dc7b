"""The ``clockwork`` command line. CLIs print for people; the library only logs.

Examples::

    clockwork detect film.mp4 --labels clock --min-score 0.5
    clockwork detect film.mp4 --json result.json          # a scan: 2 frames a second, every frame near changes
    clockwork detect film.mp4 --no-scan --sample-fps 0    # every frame
    clockwork annotate film.mp4 --out annotated.mp4
    clockwork submit film.mp4 --url http://127.0.0.1:8000 --wait
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

from clockwork import version
from clockwork.errors import ClockworkError
from clockwork.progress import Progress, hms
from clockwork.settings import DETECT
from clockwork.timeline.options import DetectOptions
from clockwork.video.views import VIEW_NAMES, parse_views

# Other installed packages add subcommands through this entry-point group (the Serve app adds
# ``clockwork serve``), so the core never imports the layers built on it.
COMMANDS_GROUP = "clockwork.commands"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _rate(text: str) -> float:
    value = _number(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _options(args) -> DetectOptions:
    """The command line's detection options, built once (``DetectOptions.resolve``: the mode rule, the defaults)."""
    from dataclasses import replace

    try:
        options = DetectOptions.resolve(
            scan=args.scan,
            sample_fps=args.sample_fps,
            labels=args.labels,
            min_score=args.min_score,
            views=parse_views(args.views),
            read_time=args.read_time,
            multiscale_fps=args.multiscale_fps,
        )
    except ValueError as exc:
        raise ValueError(f"--scan with --sample-fps: {exc}" if "scan chooses" in str(exc) else str(exc)) from None
    return replace(options, labels=None) if args.labels is None else options  # --labels all: every class


def _mode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"coarse-to-fine: detect {DETECT.scan_fps:g} frames a second, then every frame where a clock appears or "
        f"disappears (default: on, unless --sample-fps is given)",
    )
    p.add_argument(
        "--sample-fps",
        type=_rate,
        default=None,
        help=f"without a scan: detect N frames a second; 0: every frame (default: {DETECT.sample_fps or 0:g} with "
        "--no-scan)",
    )
    p.add_argument(
        "--multiscale-fps",
        type=_rate,
        default=DETECT.multiscale_fps,
        help="where every frame is examined (every frame, a scan's refined windows), the views after the first run on "
        f"N frames a second; 0: on every frame (default: {DETECT.multiscale_fps or 0:g})",
    )


def _score(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def summary(result) -> str:
    lines = [
        f"{result.video_file}: {result.width}x{result.height} @ {result.fps:.3f} fps, "
        f"{result.duration_s:.2f} s, {result.frames_processed}/{result.frames_total} frames processed, "
        f"{len(result.segments)} segment(s)"
    ]
    for seg in result.segments:
        shows = f", shows {seg.clock_time.hhmm} (confidence {seg.clock_time.confidence:.2f})" if seg.clock_time else ""
        lines.append(
            f"  {seg.label:<10} {hms(seg.start_s)} -> {hms(seg.end_s)}  "
            f"({seg.duration_s:.2f} s, {seg.frames} frames, max score {seg.max_score:.2f}{shows})"
        )
    return "\n".join(lines)


def cmd_detect(args) -> int:
    from clockwork.detect.detector import Detector
    from clockwork.timeline.pipeline import detect_video
    from clockwork.video.decode import probe

    options = _options(args)
    if args.json and args.json != "-" and not Path(args.json).resolve().parent.is_dir():
        raise ValueError(f"--json {args.json}: the folder {Path(args.json).parent} does not exist")  # before detecting
    probe(args.video)  # bad input fails here, before the model loads
    detector = Detector(args.cfg, args.weights, args.names, device=args.device, head=args.head)
    progress = Progress(Path(args.video).name)
    try:
        result = detect_video(args.video, options, detector=detector, progress=progress)
    finally:
        progress.close()
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


def cmd_annotate(args) -> int:
    from clockwork.remix.annotate import annotate_video
    from clockwork.timeline.result import VideoResult

    if args.result:
        result = VideoResult.from_json(json.loads(Path(args.result).read_text()))
    else:
        from clockwork.timeline.pipeline import detect_video
        from clockwork.video.decode import probe

        probe(args.video)  # bad input fails here, before the model loads
        progress = Progress(Path(args.video).name)
        try:
            result = detect_video(args.video, _options(args), progress=progress)
        finally:
            progress.close()
    out = annotate_video(args.video, result, args.out)
    print(
        f"wrote {out} ({len(result.segments)} segment(s), {sum(1 for f in result.frame_data if f.detections)} frames "
        "with boxes)"
    )
    return 0


def cmd_submit(args) -> int:
    from clockwork import settings
    from clockwork.client import ApiError, ApiUnreachable, Client

    token = args.token_file.read_text().strip() if args.token_file else settings.api_token()
    client = Client(args.url, token)
    fields = {
        "postback_url": args.postback_url,
        "labels": args.labels,
        "min_score": args.min_score,
        "sample_fps": args.sample_fps,
        "scan": args.scan,
        "views": args.views.split(",") if args.views else None,
        "read_time": args.read_time,
    }
    try:
        job = client.submit(args.video, idempotency_key=args.idempotency_key, **fields)
        print(
            f"job {job['job_id']} {job['status']}: {args.url.rstrip('/')}{job['status_url']}"
            if job["status_url"].startswith("/")
            else f"job {job['job_id']} {job['status']}: {job['status_url']}",
            flush=True,
        )
        if not args.wait:
            return 0
        progress = None

        def show(status):
            nonlocal progress
            done = status["progress"]
            if done.get("stage") and done.get("video_s_total"):
                progress = progress or Progress(args.video)
                progress(done["video_s_done"], done["video_s_total"], done["stage"])

        status = client.wait(job["job_id"], timeout_s=args.timeout, interval_s=1.0, on_status=show)
        if progress is not None:
            progress.close()
    except ApiUnreachable as exc:
        print(
            f"clockwork: error: {exc.message}; is `clockwork serve` running there? --url names another address",
            file=sys.stderr,
        )
        return 2
    except ApiError as exc:
        print(f"clockwork: error: {exc.message} (HTTP {exc.status})", file=sys.stderr)
        return 2
    if status["status"] != "succeeded":
        print(f"clockwork: job {job['job_id']} {status['status']}: {status.get('error')}", file=sys.stderr)
        return 1
    from clockwork.timeline.result import VideoResult

    print(summary(VideoResult.from_json(client.result(job["job_id"]))))
    return 0


def cmd_samples(args) -> int:
    from clockwork.samples import write_samples

    path = write_samples(args.directory, force=args.force)
    print(f"sample library in {Path(args.directory).resolve()} (manifest: {path})")
    return 0


def cmd_fetch_model(args) -> int:
    from clockwork.detect.model_store import fetch_default_model

    root = fetch_default_model(Path(args.model_dir) if args.model_dir else None)
    print(f"default model verified in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clockwork", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "detect",
        help="find objects in one video",
        epilog="example: clockwork detect film.mp4 --labels clock --min-score 0.5 --json -",
    )
    p.add_argument("video")
    p.add_argument(
        "--labels",
        nargs="+",
        default=list(DETECT.labels),
        help=f"class names to keep (default: {' '.join(DETECT.labels)}); 'all' keeps every class",
    )
    p.add_argument("--min-score", type=_score, default=DETECT.min_score, help=f"default: {DETECT.min_score}")
    _mode_arguments(p)
    p.add_argument(
        "--views",
        default=",".join(DETECT.views),
        help=f"views of each frame the model sees, comma-separated from {', '.join(VIEW_NAMES)} "
        f"(default: {','.join(DETECT.views)})",
    )
    p.add_argument(
        "--read-time",
        action=argparse.BooleanOptionalAction,
        default=DETECT.read_time,
        help=f"read the time each clock shows, {DETECT.read_fps:g} times a second of a segment, and fuse one reading "
        "per "
        "segment; a clock never readable makes no segment (--no-read-time keeps every clock found, unread; "
        f"default: {DETECT.read_time})",
    )
    p.add_argument("--json", metavar="OUT|-", help="write the result JSON to OUT, or to stdout with -")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--cfg", help="darknet cfg of another model (default: embedded YOLOv3-tiny)")
    p.add_argument("--weights", help="darknet weights matching --cfg")
    p.add_argument("--names", help="class names file matching --cfg")
    p.add_argument(
        "--head",
        default=DETECT.head or "none",
        metavar="clock|none|FILE",
        help="fine-tuned detection heads over the model: clock (the embedded clock head), none (COCO's own) or a "
        "file from python -m clockwork.training.train_detector --export (docs/DETECTOR.md); a head finds only its "
        "labels "
        f"(default: {DETECT.head or 'none'})",
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "annotate",
        help="draw the detections on a video (an .mp4) or on its frames (a folder of JPEGs)",
        epilog="examples: clockwork annotate film.mp4 --out annotated.mp4\n"
        "          clockwork annotate film.mp4 --result result.json --out frames/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video")
    p.add_argument(
        "--out", required=True, help="an .mp4 file (every frame, boxes drawn), or a folder (frames with boxes as JPEGs)"
    )
    p.add_argument("--result", help="a result JSON from `clockwork detect --json` (default: detect now)")
    p.add_argument(
        "--labels", nargs="+", default=list(DETECT.labels), help=f"when detecting (default: {' '.join(DETECT.labels)})"
    )
    p.add_argument(
        "--min-score", type=_score, default=DETECT.min_score, help=f"when detecting (default: {DETECT.min_score})"
    )
    _mode_arguments(p)
    p.add_argument(
        "--views", default=",".join(DETECT.views), help=f"when detecting (default: {','.join(DETECT.views)})"
    )
    p.add_argument(
        "--read-time",
        action=argparse.BooleanOptionalAction,
        default=DETECT.read_time,
        help=f"when detecting: read the clocks' time and print it by each box (default: {DETECT.read_time})",
    )
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "submit",
        help="send a video to a running API and, with --wait, follow it to its result",
        epilog="example: clockwork submit clock_moving_360p25.mp4 --url http://127.0.0.1:8000 --wait",
    )
    p.add_argument("video", help="the file name as the server knows it (relative to one of its media roots)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL (default: %(default)s)")
    p.add_argument(
        "--token-file", type=Path, help="a file holding the API token (default: $CLOCKWORK_API_TOKEN, if set)"
    )
    p.add_argument("--wait", action="store_true", help="poll until the job ends, print progress and the segments found")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default: %(default)s)")
    p.add_argument("--postback-url", help="where the server posts the result (default: none; the job is polled)")
    p.add_argument("--labels", nargs="+", help="default: the server's")
    p.add_argument("--min-score", type=_score, help="default: the server's")
    p.add_argument("--sample-fps", type=float, help="0: every frame (default: the server's)")
    p.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="coarse-to-fine scan (default: the server's)",
    )
    p.add_argument("--views", help=f"comma-separated from {', '.join(VIEW_NAMES)} (default: the server's)")
    p.add_argument(
        "--read-time",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read the time the clocks show (default: the server's)",
    )
    p.add_argument("--idempotency-key", help="the same key returns the same job")
    p.set_defaults(func=cmd_submit)

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
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
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
