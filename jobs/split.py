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
import sys
import time
from pathlib import Path

import ray
from sqlalchemy import select
from tqdm import tqdm

from clockwork.catalog import Catalog, Snippet, Video
from clockwork.clips import Profile, choose_encoder, cut, perceptual_hash
from clockwork.media import list_videos
from clockwork.pipeline import detect_video
from clockwork.pushmetrics import JobMetrics
from clockwork.segments import Hit, SegmentRules, build_segments
from jobs._common import EXIT_OK, EXIT_PARTIAL, Fatal, cluster_gpus, connect, require_ffmpeg, run, setup_logging


@ray.remote
def detect_task(path: str, label: str, min_score: float, sample_fps: float | None) -> dict:
    try:
        doc = detect_video(path, labels=[label], min_score=min_score, sample_fps=sample_fps).to_json()
        return {"path": path, "doc": doc}
    except Exception as exc:  # recorded per video; the others go on
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}


@ray.remote
def cut_task(source: str, start_s: float, end_s: float, out: str, has_audio: bool, profile: Profile, encoder: str) -> dict:
    try:
        path = cut(Path(source), start_s, end_s, Path(out), has_audio=has_audio, profile=profile, encoder=encoder)
        return {"out": out, "phash": perceptual_hash(path), "node": ray.get_runtime_context().get_node_id()}
    except Exception as exc:
        Path(out).unlink(missing_ok=True)
        return {"out": out, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def snippet_name(video: Video, label: str, start_s: float, end_s: float) -> str:
    return f"{video.source_id}-{label}-{round(start_s * 1000):08d}-{round(end_s * 1000):08d}.mp4"


def segments_of(doc: dict, label: str, min_score: float, rules: SegmentRules):
    hits = [Hit(f["frame_no"], f["timestamp_s"], label, max(d["score"] for d in f["detections"] if d["label"] == label))
            for f in doc["frame_data"]
            if any(d["label"] == label and d["score"] >= min_score for d in f["detections"])]
    fps = doc["fps"]
    if doc.get("sample_fps"):
        fps = min(fps, doc["sample_fps"])
    return build_segments(hits, fps=fps, duration_s=doc["duration_s"], rules=rules)


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m jobs.split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="clock")
    ap.add_argument("--media-root", action="append", default=[], help="also take every video under DIR (repeatable)")
    ap.add_argument("--out", required=True, help="directory for the snippets")
    ap.add_argument("--database-url", default=None, help="catalog URL (default: $CLOCKWORK_DATABASE_URL or var/catalog.sqlite)")
    ap.add_argument("--min-score", type=float, default=0.5)
    ap.add_argument("--sample-fps", type=float, default=None, help="detection sampling for videos without results")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between detections that still join one segment")
    ap.add_argument("--min-length", type=float, default=0.5)
    ap.add_argument("--padding", type=float, default=0.0)
    ap.add_argument("--max-length", type=float, default=None)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="ffmpeg threads per snippet (the task's num_cpus)")
    ap.add_argument("--progress", action="store_true", default=sys.stderr.isatty())
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    require_ffmpeg()
    rules = SegmentRules(gap_s=args.gap, min_length_s=args.min_length, padding_s=args.padding, max_length_s=args.max_length)
    profile = Profile(args.width, args.height, args.fps, threads=args.threads)
    for root in args.media_root:
        if not Path(root).is_dir():
            raise Fatal(f"media root {root!r} is not a directory")
    catalog = Catalog(args.database_url)
    metrics = JobMetrics("split")
    t0 = time.time()
    connect()
    failures: list[str] = []

    # 1. videos: catalog entries with results, plus every file under the media roots
    with catalog.session() as s:
        known = {v.path: bool(v.results) for v in s.scalars(select(Video))}
    out_dir = Path(args.out).resolve()
    found = {str(p.resolve()) for root in args.media_root for p in list_videos(root)
             if out_dir not in p.resolve().parents}  # our own snippets are not sources
    todo = sorted(found - {p for p, has in known.items() if has})
    if not known and not todo:
        raise Fatal("no videos: the catalog has none and no --media-root holds any")
    if todo:
        gpus = 1 if cluster_gpus() >= 1 else 0
        refs = [detect_task.options(num_cpus=2, num_gpus=gpus).remote(p, args.label, args.min_score, args.sample_fps) for p in todo]
        for ref in tqdm(refs, desc="detecting", unit="video", disable=not args.progress):
            out = ray.get(ref)
            if "error" in out:
                failures.append(f"{out['path']}: detection failed: {out['error']}")
                metrics.count("video", "failed")
                continue
            with catalog.session() as s:
                catalog.save_result(s, out["path"], out["doc"], {"labels": [args.label], "min_score": args.min_score,
                                                                 "sample_fps": args.sample_fps})
            metrics.count("video", "detected")

    # 2. segments -> snippets to cut (skipping finished ones)
    plan, skipped = [], 0
    with catalog.session() as s:
        videos = list(s.scalars(select(Video).where(Video.results.any())))
        for video in videos:
            doc = catalog.latest_result(s, video).document
            for seg in segments_of(doc, args.label, args.min_score, rules):
                name = snippet_name(video, args.label, seg.start_s, seg.end_s)
                row = s.scalar(select(Snippet).where(Snippet.name == name))
                path = Path(args.out).resolve() / name
                if row is not None and row.status == "done" and row.path and Path(row.path).is_file():
                    skipped += 1
                    continue
                if row is None:
                    row = Snippet(name=name, video_id=video.id, label=args.label, start_s=seg.start_s, end_s=seg.end_s,
                                  max_score=seg.max_score)
                    s.add(row)
                row.status, row.error, row.path = "pending", None, str(path)
                plan.append((name, video.path, seg.start_s, seg.end_s, str(path)))
    if not plan and not skipped:
        raise Fatal(f"no {args.label!r} segments in {len(videos)} video(s) with results: nothing to cut"
                    + (f" ({len(failures)} video(s) failed: {failures[0]})" if failures else ""))

    # 3. cut, one ffmpeg per Ray task
    audio: dict[str, bool | None] = {}
    nodes: set[str] = set()
    if plan:
        from clockwork.decode import probe

        encoder = choose_encoder()
        for _, source, *_rest in plan:
            if source not in audio:
                try:
                    audio[source] = probe(source).has_audio
                except Exception as exc:
                    audio[source] = None
                    failures.append(f"{source}: {exc}")
        # SPREAD: ffmpeg tasks balance across nodes instead of filling the head first.
        refs = {cut_task.options(num_cpus=args.threads, scheduling_strategy="SPREAD").remote(src, a, b, out, audio[src], profile, encoder): name
                for name, src, a, b, out in plan if audio[src] is not None}
        pending = list(refs)
        with tqdm(total=len(refs), desc="cutting", unit="snippet", disable=not args.progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                out = ray.get(done[0])
                with catalog.session() as s:
                    row = s.scalar(select(Snippet).where(Snippet.name == refs[done[0]]))
                    if "error" in out:
                        row.status, row.error = "failed", out["error"]
                        failures.append(f"{row.name}: {out['error']}")
                        metrics.count("snippet", "failed")
                    else:
                        row.status, row.phash = "done", out["phash"]
                        nodes.add(out["node"])
                        metrics.count("snippet", "cut")
                bar.update(1)
        metrics.output_seconds.set(sum(b - a for _, _, a, b, _ in plan))
    metrics.count("snippet", "skipped", skipped)
    with catalog.session() as s:
        done_rows = s.scalars(select(Snippet).where(Snippet.label == args.label, Snippet.status == "done")).all()
    ok = not failures
    metrics.push(ok=ok)
    print(f"split: {len(plan)} snippet(s) cut this run on {len(nodes)} node(s), {skipped} already done, "
          f"{len(done_rows)} {args.label!r} snippet(s) ready in {args.out} "
          f"from {len(videos)} video(s) in {time.time() - t0:.1f} s; {len(failures)} failure(s)."
          + (f" Encoder: {choose_encoder()}." if plan else " Nothing new to cut: every snippet was already done."))
    for line in failures:
        print(f"  failed: {line}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(run(main, prog="jobs.split"))
