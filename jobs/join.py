"""Join unique snippets into one remix with ffmpeg's concat demuxer. A Ray job:

    ray job submit --working-dir . -- python -m jobs.join --label clock --per-source 1 --order random --seed 7 --out /media/out.mp4

Picks at most --per-source snippets per source video, drops near-duplicates by perceptual hash,
orders them reproducibly, writes videolist.txt, runs ``ffmpeg -f concat -safe 0 -i videolist.txt -c copy``,
verifies the result with ffprobe, and writes out.html beside it (player, thumbnails, score timelines).

Exit status: 0 done, 2 nothing could be done (no snippets, missing files, failed verification).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ray
from sqlalchemy import select

from clockwork.catalog import Remix, Snippet, Video
from clockwork.clips import thumbnail_jpeg
from clockwork.clocktime import hhmm_to_minutes
from clockwork.errors import ClockworkError
from clockwork.pushmetrics import JobMetrics
from clockwork.remix import DEFAULT_MAX_DISTANCE, ORDERS, Pick, concat, remix_document, verify, write_report, write_videolist
from clockwork.remix import select as choose
from clockwork.settings import DETECT
from jobs._common import EXIT_OK, Fatal, connect, open_catalog, require_ffmpeg, run, setup_logging


@ray.remote(num_cpus=1)
def thumb_task(path: str, at_s: float) -> bytes:
    return thumbnail_jpeg(Path(path), at_s)


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m jobs.join", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default=DETECT.labels[0])
    ap.add_argument("--per-source", type=int, default=1)
    ap.add_argument("--order", choices=ORDERS, default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", default="12:00", help="time-of-day order: the first time the remix's clocks show (H:MM; default 12:00)")
    ap.add_argument("--span", type=int, default=720, help="time-of-day order: minutes of the dial it covers from --start (default 720)")
    ap.add_argument("--min-time-confidence", type=float, default=0.5,
                    help="time-of-day order: readings below this confidence are not trusted (default 0.5)")
    ap.add_argument("--max-duration", type=float, default=None, help="seconds; snippets past it are left out")
    ap.add_argument("--max-distance", type=int, default=DEFAULT_MAX_DISTANCE, help="pHash bits under which two snippets are duplicates")
    ap.add_argument("--out", required=True, help="the remix, e.g. out.mp4 (out.html and videolist.txt go beside it)")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    require_ffmpeg()
    out = Path(args.out).resolve()
    if out.suffix.lower() != ".mp4":
        raise Fatal(f"--out must name an .mp4 file, got {args.out!r}")
    catalog = open_catalog(args.database_url)
    metrics = JobMetrics("join")
    t0 = time.time()
    with catalog.session() as s:
        rows = s.execute(select(Snippet, Video).join(Video, Snippet.video_id == Video.id)
                         .where(Snippet.label == args.label, Snippet.status == "done")).all()
        picks = [Pick(sn.name, sn.path, v.path, sn.start_s, sn.end_s, sn.max_score, sn.phash,
                      sn.clock_minutes if (sn.clock_confidence or 0) >= args.min_time_confidence else None) for sn, v in rows]
        sources = {}
        for _, video in rows:
            if video.path not in sources:
                result = catalog.latest_result(s, video).video_result()
                sources[video.path] = {
                    "duration_s": result.duration_s,
                    "frames": [(f.timestamp_s, f.best_score(args.label)) for f in result.frame_data],
                    "segments": [],
                }
        for sn, video in rows:
            sources[video.path]["segments"].append((sn.start_s, sn.end_s))
        no_clocks = []
        for video in s.scalars(select(Video).order_by(Video.path)):
            result = catalog.latest_result(s, video)
            if result is not None and not any(seg.label == args.label for seg in result.segments):
                no_clocks.append(video.path)
    if not picks:
        raise Fatal(f"no {args.label!r} snippets in the catalog ({catalog.url}); run `python -m jobs.split` first")
    missing = [p.path for p in picks if not p.path or not Path(p.path).is_file()]
    if missing:
        raise Fatal(f"{len(missing)} snippet file(s) registered in the catalog are gone, e.g. {missing[0]}; "
                    "run `python -m jobs.split` again to recut them")
    try:
        start = hhmm_to_minutes(args.start)
        selection = choose(picks, per_source=args.per_source, order=args.order, seed=args.seed,
                           max_duration_s=args.max_duration, max_distance=args.max_distance,
                           start_minutes=start, span_minutes=args.span)
    except ValueError as exc:
        raise Fatal(str(exc)) from None
    if not selection.chosen:
        if args.order == "time-of-day":
            read = sum(p.clock_minutes is not None for p in picks)
            raise Fatal(f"no snippet's clock reads between {args.start} and {args.span} minutes later ({read} of {len(picks)} "
                        "snippets have a trusted reading; run jobs.split with --read-time, the default)")
        raise Fatal(f"no snippet fits --max-duration {args.max_duration}")
    connect()
    out.parent.mkdir(parents=True, exist_ok=True)
    videolist = write_videolist([p.path for p in selection.chosen], out.with_name("videolist.txt"))
    thumbs_refs = {p.name: thumb_task.remote(p.path, p.duration_s / 2) for p in selection.chosen}
    try:
        concat(videolist, out)
        expected = sum(p.duration_s for p in selection.chosen)
        checked = verify(out, expected)
    except ClockworkError as exc:
        out.unlink(missing_ok=True)
        raise Fatal(str(exc).splitlines()[0]) from None
    thumbs = {name: ray.get(ref) for name, ref in thumbs_refs.items()}
    document = remix_document(out, picks=selection.chosen, sources=sources, selection=selection, label=args.label,
                              order=args.order, no_clocks=no_clocks,
                              span=(start, args.span) if args.order == "time-of-day" else None)
    report = write_report(out.with_suffix(".html"), document, thumbs)
    with catalog.session() as s:
        s.add(Remix(path=str(out), label=args.label, duration_s=checked["duration_s"], document=document))
    metrics.count("snippet", "joined", len(selection.chosen))
    metrics.count("snippet", "duplicate", len(selection.dropped_duplicates))
    metrics.output_seconds.set(checked["duration_s"])
    metrics.push(ok=True)
    print(f"join: {len(selection.chosen)} snippet(s) from {len({p.source for p in selection.chosen})} source(s), "
          f"{checked['duration_s']:.2f} s, in {time.time() - t0:.1f} s "
          f"({len(selection.dropped_duplicates)} near-duplicate(s), {len(selection.dropped_per_source)} over the per-source "
          f"limit, {len(selection.dropped_duration)} over the duration left out).\n"
          f"  remix:  {out}\n  report: {report}\n  list:   {videolist}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run(main, prog="jobs.join"))
