"""Join unique snippets into one remix with ffmpeg's concat demuxer. A Ray job:

    ray job submit --working-dir . -- python -m jobs.join --label clock --per-source 1 --order random --seed 7 --out
    /media/out.mp4

Picks at most --per-source snippets per source video, drops near-duplicates by perceptual hash,
orders them reproducibly, writes videolist.txt, runs ``ffmpeg -f concat -safe 0 -i videolist.txt -c copy``,
verifies the result with ffprobe, and writes out.html beside it (player, thumbnails, score timelines).

Exit status: 0 done, 2 nothing could be done (no snippets, missing files, failed verification).
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from clockwork.errors import ClockworkError
from clockwork.progress import Progress
from clockwork.pushmetrics import JobMetrics
from clockwork.remix import (
    DEFAULT_MAX_DISTANCE,
    GAP_RULES,
    ORDERS,
    Pick,
    Placed,
    Selection,
    concat,
    place,
    remix_document,
    time_span,
    verify,
    write_report,
    write_videolist,
)
from clockwork.remix import select as choose
from clockwork.remix.clips import Profile, card, cut, thumbnail_jpeg
from clockwork.settings import DETECT
from clockwork.timeline.result import VideoResult
from clockwork.timeread.clocktime import DAY_MINUTES, day_clock
from jobs._common import EXIT_OK, Fatal, connect, open_catalog, parse_args, require_ffmpeg, run, setup_logging


@ray.remote(num_cpus=1)
def thumb_task(path: str, at_s: float) -> bytes:
    return thumbnail_jpeg(Path(path), at_s)


CARD_PIECE_S = 60  # a long card is rendered as pieces of at most this many seconds, in parallel


@ray.remote(num_cpus=2)
def stretch_task(stretch: Placed, out: str, offset_s: int = 0, duration_s: float | None = None) -> str:
    """One piece of a time-of-day remix: a snippet trimmed to the seconds it plays, or (a piece of) a card."""
    if stretch.pick is None:
        return str(
            card(Path(out), duration_s or stretch.duration_s, stretch.shows, profile=Profile(), offset_s=offset_s)
        )
    return str(cut(Path(stretch.pick.path), 0.0, stretch.duration_s, Path(out), has_audio=True, profile=Profile()))


def render_stretches(placement, parts_dir: Path) -> list[str]:
    """The files of a time-of-day remix in order: untouched snippets as they are; trimmed snippets and cards
    (long cards in pieces) rendered as Ray tasks, with progress in video seconds as they land."""
    paths: list[str | ray.ObjectRef] = []
    seconds: dict[ray.ObjectRef, float] = {}
    for i, st in enumerate(placement.stretches):
        if st.pick is not None and not st.trimmed:
            paths.append(st.pick.path)
            continue
        pieces = (
            [(0, st.duration_s)]
            if st.pick is not None
            else [
                (a, min(CARD_PIECE_S, st.duration_s - a))
                for a in range(0, math.ceil(st.duration_s - 1e-6), CARD_PIECE_S)
            ]
        )
        for j, (a, length) in enumerate(pieces):
            name = f"{i:05d}-{j:04d}-{'card' if st.pick is None else 'trim'}.mp4"
            ref = stretch_task.remote(st, str(parts_dir / name), a, length)
            seconds[ref] = length
            paths.append(ref)
    progress, done, pending = Progress("join"), 0.0, list(seconds)
    total = sum(seconds.values())
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done += seconds[ready[0]]
            progress(done, total, "cards and trims")
    finally:
        progress.close()
    return [ray.get(p) if isinstance(p, ray.ObjectRef) else p for p in paths]


def parse(argv):
    ap = argparse.ArgumentParser(
        prog="python -m jobs.join", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--label", default=DETECT.labels[0])
    ap.add_argument("--per-source", type=int, default=1)
    ap.add_argument("--order", choices=ORDERS, default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--start",
        default=None,
        help="time-of-day order: the time of day the remix starts at, HH:MM on a 24-hour clock (10:10 is a.m., "
        "22:10 p.m.; default: where the readings begin, as the shortest stretch of the dial holding them all)",
    )
    ap.add_argument(
        "--span",
        type=int,
        default=None,
        help=f"time-of-day order: minutes the remix lasts, 1 to {DAY_MINUTES} (default: through the last reading, "
        "plus a minute)",
    )
    ap.add_argument(
        "--gaps",
        choices=GAP_RULES,
        default="card",
        help="time-of-day order: card (default) fills the minutes no clip covers with a black card showing the time, "
        "so the remix runs in real time; skip plays the clips back to back",
    )
    ap.add_argument(
        "--am",
        action="append",
        default=[],
        metavar="GLOB",
        help="time-of-day order: sources (path or file name matching GLOB) whose clocks show a.m. times (repeatable)",
    )
    ap.add_argument("--pm", action="append", default=[], metavar="GLOB", help="the same for p.m. (repeatable)")
    ap.add_argument(
        "--min-time-confidence",
        type=float,
        default=0.5,
        help="time-of-day order: readings below this confidence are not trusted (default 0.5)",
    )
    ap.add_argument("--max-duration", type=float, default=None, help="seconds; snippets past it are left out")
    ap.add_argument(
        "--max-distance",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help="pHash bits under which two snippets are duplicates",
    )
    ap.add_argument("--out", required=True, help="the remix, e.g. out.mp4 (out.html and videolist.txt go beside it)")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    return parse_args(ap, argv)


@dataclass
class Library:
    """What the join works from: the snippets it may pick, their sources' scores and segments (for the report), and
    the scanned videos where no clock was found."""

    picks: list[Pick]
    sources: dict[str, dict]
    no_clocks: list[str]


def load_library(catalog, args) -> Library:
    """The catalog's cut snippets of ``--label``, each with its reading where it is trusted
    (``--min-time-confidence``)."""
    rows = catalog.snippets_to_join(args.label)
    picks = [
        Pick(
            sn.name,
            sn.path,
            source,
            sn.start_s,
            sn.end_s,
            sn.max_score,
            sn.phash,
            sn.clock_minutes if (sn.clock_confidence or 0) >= args.min_time_confidence else None,
        )
        for sn, source in rows
    ]
    if not picks:
        labels = catalog.snippet_labels()
        hint = (
            f"; the catalog has snippets labelled {', '.join(map(repr, labels))}"
            if labels
            else "; run `python -m jobs.split` first"
        )
        raise Fatal(f"no {args.label!r} snippets in the catalog ({catalog.url}){hint}")
    missing = [p.path for p in picks if not p.path or not Path(p.path).is_file()]
    if missing:
        raise Fatal(
            f"{len(missing)} snippet file(s) registered in the catalog are gone, e.g. {missing[0]}; "
            "run `python -m jobs.split` again to recut them"
        )
    scanned = catalog.library()
    sources: dict[str, dict] = {}
    for sn, source in rows:
        if source not in sources:
            result = VideoResult.from_json(scanned[source].document)
            sources[source] = {
                "duration_s": result.duration_s,
                "segments": [],
                "frames": [(f.timestamp_s, f.best_score(args.label)) for f in result.frame_data],
            }
        sources[source]["segments"].append((sn.start_s, sn.end_s))
    no_clocks = sorted(
        path
        for path, v in scanned.items()
        if v.document is not None and not any(seg["label"] == args.label for seg in v.document["segments"])
    )
    return Library(picks, sources, no_clocks)


def select_snippets(library: Library, args) -> tuple[Selection, dict[str, str], int, int]:
    """The selection (per source, without near-duplicates, ordered), the sources' a.m./p.m. pins, and the time-of-day
    span (start and length in minutes)."""
    picks = library.picks
    meridiem = {
        p.source: half
        for p in picks
        for half, globs in (("am", args.am), ("pm", args.pm))
        if any(fnmatch.fnmatch(p.source, g) or fnmatch.fnmatch(Path(p.source).name, g) for g in globs)
    }
    try:
        start, span = 0, DAY_MINUTES
        if args.order == "time-of-day":
            start, span = time_span(picks, start=args.start, span=args.span, meridiem=meridiem)
        selection = choose(
            picks,
            per_source=args.per_source,
            order=args.order,
            seed=args.seed,
            max_duration_s=args.max_duration,
            max_distance=args.max_distance,
            start_minutes=start,
            span_minutes=span,
            meridiem=meridiem,
        )
    except ValueError as exc:
        raise Fatal(str(exc)) from None
    if not selection.chosen:
        if args.order == "time-of-day":
            read = sum(p.clock_minutes is not None for p in picks)
            raise Fatal(
                f"no snippet's clock reads between {day_clock(start)} and {span} minutes later ({read} of {len(picks)} "
                "snippets have a trusted reading; run jobs.split with --read-time, the default)"
            )
        raise Fatal(f"no snippet fits --max-duration {args.max_duration}")
    return selection, meridiem, start, span


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
    library = load_library(catalog, args)
    selection, meridiem, start, span = select_snippets(library, args)
    connect()
    out.parent.mkdir(parents=True, exist_ok=True)
    placement = None
    if args.order == "time-of-day":
        placement = place(selection.chosen, start=start, span=span, gaps=args.gaps, meridiem=meridiem)
        parts_dir = out.with_name(f"{out.stem}.parts")
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir()
        print(
            f"join: {sum(st.pick is None for st in placement.stretches)} card(s), "
            f"{sum(st.trimmed for st in placement.stretches)} trimmed snippet(s); the remix runs from "
            f"{day_clock(start)} "
            f"for {span} min",
            flush=True,
        )
        paths = render_stretches(placement, parts_dir)
        expected = placement.duration_s
    else:
        paths = [p.path for p in selection.chosen]
        expected = sum(p.duration_s for p in selection.chosen)
    videolist = write_videolist(paths, out.with_name("videolist.txt"))
    chosen = [st.pick for st in placement.stretches if st.pick is not None] if placement else selection.chosen
    thumbs_refs = {p.name: thumb_task.remote(p.path, p.duration_s / 2) for p in chosen}
    joining = Progress("join")
    try:
        concat(videolist, out, on_progress=lambda t: joining(min(t, expected), expected, "concat"))
        joining.close()
        checked = verify(out, expected)
    except ClockworkError as exc:
        out.unlink(missing_ok=True)
        raise Fatal(str(exc).splitlines()[0]) from None
    thumbs = {name: ray.get(ref) for name, ref in thumbs_refs.items()}
    document = remix_document(
        out,
        picks=chosen,
        sources=library.sources,
        selection=selection,
        label=args.label,
        order=args.order,
        no_clocks=library.no_clocks,
        placement=placement,
        gaps=args.gaps,
    )
    report = write_report(out.with_suffix(".html"), document, thumbs)
    catalog.add_remix(str(out), label=args.label, duration_s=checked["duration_s"], document=document)
    metrics.count("snippet", "joined", len(chosen))
    metrics.count("snippet", "duplicate", len(selection.dropped_duplicates))
    metrics.output_seconds.set(checked["duration_s"])
    metrics.push(ok=True)
    print(
        f"join: {len(chosen)} snippet(s) from {len({p.source for p in chosen})} source(s), "
        f"{checked['duration_s']:.2f} s, in {time.time() - t0:.1f} s "
        f"({len(selection.dropped_duplicates)} near-duplicate(s), {len(selection.dropped_per_source)} over the "
        "per-source "
        f"limit, {len(selection.dropped_duration)} over the duration left out).\n"
        f"  remix:  {out}\n  report: {report}\n  list:   {videolist}"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run(main, prog="jobs.join"))
