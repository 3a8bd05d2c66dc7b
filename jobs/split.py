"""Split videos into snippets wherever a label (clocks) appears. A Ray job:

    ray job submit --working-dir . -- python -m jobs.split --label clock --media-root /media --out /media/slices

Takes every video in the catalog that has detection results, plus every video under --media-root;
videos without results are detected first as Ray tasks (GPUs requested when the cluster has them).
Segments follow the core rules; each is cut by its own Ray task (one ffmpeg each, ``num_cpus`` = its
threads) with a fast, frame-accurate seek into one normalised profile, and registered in the catalog
with a perceptual hash. Names are deterministic, so a rerun skips finished snippets.

Exit status: 0 all done, 1 done with some items failed (listed), 2 nothing could be done.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray

from clockwork.progress import Progress
from clockwork.pushmetrics import JobMetrics
from clockwork.remix.clips import Profile, choose_encoder, cut, perceptual_hash
from clockwork.settings import CLIPS, DETECT, SEGMENTS
from clockwork.store.catalog import Catalog, Video
from clockwork.timeline.options import DetectOptions
from clockwork.timeline.segments import SegmentRules
from clockwork.video.media import list_videos
from clockwork.video.views import parse_views
from jobs._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    Fatal,
    cluster_gpus,
    connect,
    open_catalog,
    parse_args,
    require_ffmpeg,
    run,
    setup_logging,
)


@ray.remote
def detect_task(path: str, options: DetectOptions, rules: SegmentRules = SegmentRules()) -> dict:
    """Detect one video; on a GPU task the frames come from NVDEC (``detect_video`` reads through FrameReader)."""
    from clockwork.timeline.pipeline import detect_video

    try:
        return {"path": path, "result": detect_video(path, options, rules=rules)}
    except Exception as exc:  # recorded per video; the others go on
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}


@ray.remote
def cut_task(
    source: str, start_s: float, end_s: float, out: str, has_audio: bool, profile: Profile, encoder: str
) -> dict:
    try:
        path = cut(Path(source), start_s, end_s, Path(out), has_audio=has_audio, profile=profile, encoder=encoder)
        return {"out": out, "phash": perceptual_hash(path), "node": ray.get_runtime_context().get_node_id()}
    except Exception as exc:
        Path(out).unlink(missing_ok=True)
        return {"out": out, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def snippet_name(video: Video, label: str, start_s: float, end_s: float) -> str:
    return f"{video.source_id}-{label}-{round(start_s * 1000):08d}-{round(end_s * 1000):08d}.mp4"


def parse(argv):
    ap = argparse.ArgumentParser(
        prog="python -m jobs.split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--label", default=DETECT.labels[0])
    ap.add_argument("--media-root", action="append", default=[], help="also take every video under DIR (repeatable)")
    ap.add_argument("--out", required=True, help="directory for the snippets")
    ap.add_argument(
        "--database-url",
        default=None,
        help="catalog URL (default: $CLOCKWORK_DATABASE_URL, else catalog.sqlite in $CLOCKWORK_DATA_DIR)",
    )
    ap.add_argument(
        "--read-time",
        action=argparse.BooleanOptionalAction,
        default=DETECT.read_time,
        help="read the time each clock shows while detecting, so jobs.join can order by time of day (default: on)",
    )
    ap.add_argument("--min-score", type=float, default=DETECT.min_score)
    ap.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"coarse-to-fine detection of videos without results: {DETECT.scan_fps:g} frames a second, every frame "
        "near changes (default: on, unless --sample-fps is given)",
    )
    ap.add_argument(
        "--sample-fps",
        type=float,
        default=None,
        help=f"without a scan: detection rate; 0: every frame (default {DETECT.sample_fps:g} with --no-scan)",
    )
    ap.add_argument(
        "--views", default=",".join(DETECT.views), help=f"views of each frame (default {','.join(DETECT.views)})"
    )
    ap.add_argument(
        "--gap", type=float, default=SEGMENTS.gap_s, help="seconds between detections that still join one segment"
    )
    ap.add_argument("--min-length", type=float, default=SEGMENTS.min_length_s)
    ap.add_argument("--padding", type=float, default=SEGMENTS.padding_s)
    ap.add_argument("--max-length", type=float, default=SEGMENTS.max_length_s)
    ap.add_argument("--width", type=int, default=CLIPS.width)
    ap.add_argument("--height", type=int, default=CLIPS.height)
    ap.add_argument("--fps", type=int, default=CLIPS.fps)
    ap.add_argument(
        "--threads", type=int, default=CLIPS.threads, help="ffmpeg threads per snippet (the task's num_cpus)"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = parse_args(ap, argv)
    if args.sample_fps is not None and not (args.sample_fps >= 0 and math.isfinite(args.sample_fps)):
        ap.error(f"--sample-fps must be 0 (every frame) or a positive number, got {args.sample_fps:g}")
    try:
        args.options = DetectOptions.resolve(
            scan=args.scan,
            sample_fps=args.sample_fps,
            labels=[args.label],
            min_score=args.min_score,
            views=parse_views(args.views),
            read_time=args.read_time,
        )
    except ValueError as exc:
        ap.error(f"--scan with --sample-fps: {exc}" if "scan chooses" in str(exc) else str(exc))
    return args


@dataclass
class Run:
    """What one run of the job has done so far."""

    args: argparse.Namespace
    catalog: Catalog
    metrics: JobMetrics
    failures: list[str] = field(default_factory=list)
    plan: list[tuple[str, str, float, float, str]] = field(default_factory=list)  # name, source, start, end, out
    skipped: int = 0
    videos: int = 0
    nodes: set[str] = field(default_factory=set)


def videos_to_detect(run_: Run) -> list[str]:
    """Every file under the media roots without a result in the catalog (our own snippets excluded)."""
    args = run_.args
    known = run_.catalog.videos_by_results()
    out_dir = Path(args.out).resolve()
    found = {
        str(p.resolve()) for root in args.media_root for p in list_videos(root) if out_dir not in p.resolve().parents
    }
    todo = sorted(found - {p for p, has in known.items() if has})
    if not known and not todo:
        raise Fatal("no videos: the catalog has none and no --media-root holds any")
    return todo


def detect_missing(run_: Run, todo: list[str], rules: SegmentRules) -> None:
    """Detect the videos without results as Ray tasks (a GPU each where the cluster has one)."""
    args = run_.args
    gpus = 1 if cluster_gpus() >= 1 else 0
    refs = [detect_task.options(num_cpus=2, num_gpus=gpus).remote(p, args.options, rules) for p in todo]
    length = dict(zip(refs, map(_duration, todo), strict=True))
    progress, done, total = Progress("split"), 0.0, sum(length.values())
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        out = ray.get(ready[0])
        done += length[ready[0]]
        progress(done, total, "detecting")
        if "error" in out:
            run_.failures.append(f"{out['path']}: detection failed: {out['error']}")
            run_.metrics.count("video", "failed")
            continue
        run_.catalog.add_result(out["path"], out["result"], args.options.to_json())
        run_.metrics.count("video", "detected")
    progress.close()


def _duration(path: str) -> float:
    """A video's seconds from its header (the progress total); 0 for a file that cannot be read (it fails later)."""
    from clockwork.video.decode import probe

    try:
        return probe(path).duration_s
    except Exception:
        return 0.0


def plan_snippets(run_: Run, rules: SegmentRules) -> None:
    """Segments of every video with results -> snippets to cut, skipping those already done."""
    args = run_.args
    videos = run_.catalog.results_to_cut()
    run_.videos = len(videos)
    known = run_.catalog.snippets(args.label)
    planned = []
    for video, result in videos:
        for seg in result.build_segments(rules, label=args.label, min_score=args.min_score):
            name = snippet_name(video, args.label, seg.start_s, seg.end_s)
            row = known.get(name)
            path = Path(args.out).resolve() / name
            if row is not None and row.status == "done" and row.path and Path(row.path).is_file():
                run_.skipped += 1
                continue
            shows = result.clock_time_between(seg.start_s, seg.end_s, args.label)  # what its clock shows, if read
            planned.append(
                {
                    "name": name,
                    "video_id": video.id,
                    "label": args.label,
                    "start_s": seg.start_s,
                    "end_s": seg.end_s,
                    "max_score": seg.max_score,
                    "path": str(path),
                    "clock_minutes": shows.minutes if shows else None,
                    "clock_confidence": shows.confidence if shows else None,
                }
            )
            run_.plan.append((name, video.path, seg.start_s, seg.end_s, str(path)))
    run_.catalog.plan_snippets(planned)
    if not run_.plan and not run_.skipped:
        raise Fatal(
            f"no {args.label!r} segments in {run_.videos} video(s) with results: nothing to cut"
            + (f" ({len(run_.failures)} video(s) failed: {run_.failures[0]})" if run_.failures else "")
        )


def cut_snippets(run_: Run, profile: Profile, encoder: str) -> None:
    """One ffmpeg per Ray task, spread over the nodes; each result is recorded as it lands."""
    from clockwork.video.decode import probe

    args = run_.args
    audio: dict[str, bool | None] = {}
    for _, source, *_rest in run_.plan:
        if source not in audio:
            try:
                audio[source] = probe(source).has_audio
            except Exception as exc:
                audio[source] = None
                run_.failures.append(f"{source}: {exc}")
    # SPREAD: ffmpeg tasks balance across nodes instead of filling the head first.
    refs = {
        cut_task.options(num_cpus=args.threads, scheduling_strategy="SPREAD").remote(
            src, a, b, out, audio[src], profile, encoder
        ): name
        for name, src, a, b, out in run_.plan
        if audio[src] is not None
    }
    pending = list(refs)
    length = {name: b - a for name, _, a, b, _ in run_.plan}
    bar, done, total = Progress("split"), 0.0, sum(length[name] for name in refs.values())
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done_ref = ready[0]
            out = ray.get(done_ref)
            name = refs[done_ref]
            if "error" in out:
                run_.catalog.finish_snippet(name, error=out["error"])
                run_.failures.append(f"{name}: {out['error']}")
                run_.metrics.count("snippet", "failed")
            else:
                run_.catalog.finish_snippet(name, phash=out["phash"])
                run_.nodes.add(out["node"])
                run_.metrics.count("snippet", "cut")
            done += length[refs[done_ref]]
            bar(done, total, "cutting")
    finally:
        bar.close()
    run_.metrics.output_seconds.set(sum(b - a for _, _, a, b, _ in run_.plan))


def report(run_: Run, t0: float, encoder: str | None) -> int:
    args = run_.args
    run_.metrics.count("snippet", "skipped", run_.skipped)
    ready = run_.catalog.count_snippets(args.label)
    ok = not run_.failures
    run_.metrics.push(ok=ok)
    print(
        f"split: {len(run_.plan)} snippet(s) cut this run on {len(run_.nodes)} node(s), {run_.skipped} already done, "
        f"{ready} {args.label!r} snippet(s) ready in {args.out} "
        f"from {run_.videos} video(s) in {time.time() - t0:.1f} s; {len(run_.failures)} failure(s)."
        + (f" Encoder: {encoder}." if encoder else " Nothing new to cut: every snippet was already done.")
    )
    for line in run_.failures:
        print(f"  failed: {line}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_PARTIAL


def main(argv=None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    require_ffmpeg()
    rules = SegmentRules(
        gap_s=args.gap, min_length_s=args.min_length, padding_s=args.padding, max_length_s=args.max_length
    )
    profile = Profile(args.width, args.height, args.fps, threads=args.threads)
    for root in args.media_root:
        if not Path(root).is_dir():
            if not Path(root).is_absolute() and "/runtime_resources/" in str(Path.cwd()):
                raise Fatal(
                    f"media root {root!r} is not a directory in Ray's copy of the working directory, which leaves out "
                    "git-ignored folders such as var/; give --media-root as an absolute path"
                )
            raise Fatal(f"media root {root!r} is not a directory")
    run_ = Run(args, open_catalog(args.database_url), JobMetrics("split"))
    t0 = time.time()
    connect()
    todo = videos_to_detect(run_)
    if todo:
        detect_missing(run_, todo, rules)
    plan_snippets(run_, rules)
    encoder = None
    if run_.plan:
        encoder = choose_encoder()
        cut_snippets(run_, profile, encoder)
    return report(run_, t0, encoder)


if __name__ == "__main__":
    sys.exit(run(main, prog="jobs.split"))
