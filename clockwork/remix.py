"""Where clips become a remix: pick unique snippets, concatenate them, verify, and report.

"Unique" means at most ``per_source`` snippets per source video (the original retried
``random.choice`` until it looped forever with fewer than 50 videos) and no two near-duplicate
snippets (perceptual hashes within ``max_distance`` bits: the same footage uploaded twice).
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clockwork import ffmpeg
from clockwork.clips import hash_distance
from clockwork.errors import ClockworkError

ORDERS = ("random", "source-time", "score", "time-of-day")
DIAL_MINUTES = 720
DEFAULT_MAX_DISTANCE = 40  # of 256 bits; re-encodes of one clip measured 12, different clips over 100


@dataclass(frozen=True)
class Pick:
    name: str
    path: str
    source: str
    start_s: float
    end_s: float
    score: float
    phash: str | None
    clock_minutes: int | None = None  # the time its clock shows at its first frame (0..719), when read

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Selection:
    chosen: list[Pick]
    dropped_per_source: list[Pick]
    dropped_duplicates: list[tuple[Pick, Pick]]  # (dropped, the kept one it duplicates)
    dropped_duration: list[Pick]


def select(snippets: Sequence[Pick], *, per_source: int = 1, order: str = "random", seed: int = 0,
           max_duration_s: float | None = None, max_distance: int = DEFAULT_MAX_DISTANCE,
           start_minutes: int = 0, span_minutes: int = DIAL_MINUTES) -> Selection:
    """Choose snippets deterministically for a given seed. ``time-of-day`` keeps the snippets whose clock
    was read inside ``span_minutes`` from ``start_minutes`` (on the 12-hour dial) and orders them by that time,
    so the remix's clocks run forward, as in The Clock."""
    if order not in ORDERS:
        raise ValueError(f"Invalid order ({order!r}). Supported values are {', '.join(ORDERS)}.")
    if order == "time-of-day":
        if not 1 <= span_minutes <= DIAL_MINUTES:
            raise ValueError(f"Invalid span ({span_minutes}). Supported values are 1 to {DIAL_MINUTES} minutes.")
        snippets = [p for p in snippets if p.clock_minutes is not None and _after(p.clock_minutes, start_minutes) < span_minutes]
    if per_source < 1:
        raise ValueError(f"Invalid per_source ({per_source}). Supported values are integers >= 1.")
    # Best first: score, then earlier, then name, so ties never depend on input order.
    ranked = sorted(snippets, key=lambda p: (-p.score, p.source, p.start_s, p.name))
    kept: list[Pick] = []
    per: dict[str, int] = {}
    dropped_src, dropped_dup = [], []
    for pick in ranked:
        if per.get(pick.source, 0) >= per_source:
            dropped_src.append(pick)
            continue
        twin = next((k for k in kept if pick.phash and k.phash and hash_distance(pick.phash, k.phash) <= max_distance), None)
        if twin is not None:
            dropped_dup.append((pick, twin))
            continue
        kept.append(pick)
        per[pick.source] = per.get(pick.source, 0) + 1
    if order == "source-time":
        kept.sort(key=lambda p: (p.source, p.start_s))
    elif order == "time-of-day":
        kept.sort(key=lambda p: (_after(p.clock_minutes, start_minutes), p.source, p.start_s))
    elif order == "random":
        kept.sort(key=lambda p: p.name)
        random.Random(seed).shuffle(kept)
    chosen, dropped_dur, total = [], [], 0.0
    for pick in kept:
        if max_duration_s is not None and total + pick.duration_s > max_duration_s + 1e-6:
            dropped_dur.append(pick)
            continue
        chosen.append(pick)
        total += pick.duration_s
    return Selection(chosen, dropped_src, dropped_dup, dropped_dur)


def _after(minutes: int, start: int) -> int:
    """Minutes from ``start`` forward to ``minutes`` on the 12-hour dial."""
    return (int(minutes) - int(start)) % DIAL_MINUTES


def coverage(picks: Sequence[Pick], start_minutes: int, span_minutes: int) -> dict:
    """Which minutes of the span the remix's clocks show: each snippet covers its clock's time for as long as
    it plays. Returns the share covered and the gaps (start minute, length) of the span no clock shows."""
    covered = [False] * span_minutes
    for p in picks:
        if p.clock_minutes is None:
            continue
        first = _after(p.clock_minutes, start_minutes)
        for m in range(first, first + max(1, math.ceil(p.duration_s / 60))):
            if m < span_minutes:
                covered[m] = True
    gaps, m = [], 0
    while m < span_minutes:
        if covered[m]:
            m += 1
            continue
        n = m
        while n < span_minutes and not covered[n]:
            n += 1
        gaps.append({"from": _hhmm(start_minutes + m), "minutes": n - m})
        m = n
    return {"start": _hhmm(start_minutes), "span_minutes": span_minutes, "covered_minutes": sum(covered),
            "share": round(sum(covered) / span_minutes, 4), "gaps": gaps}


def _hhmm(minutes: int) -> str:
    h, m = divmod(int(minutes) % DIAL_MINUTES, 60)
    return f"{h or 12}:{m:02d}"


def concat_line(path: str | Path) -> str:
    """One concat-demuxer line. Paths are absolute and single-quoted; a quote inside becomes '\\''.
    Absolute paths also keep names with a leading dash from reading as options."""
    p = str(Path(path).resolve())
    return "file '" + p.replace("'", "'\\''") + "'"


def write_videolist(paths: Sequence[str | Path], out: Path) -> Path:
    tmp = out.with_name(out.name + ".part")
    tmp.write_text("ffconcat version 1.0\n" + "".join(concat_line(p) + "\n" for p in paths))
    tmp.replace(out)
    return out


def concat(videolist: Path, out: Path) -> Path:
    """``ffmpeg -f concat -safe 0 -i videolist.txt -c copy out.mp4``, to a temporary name first."""
    tmp = out.with_name(f".{out.stem}.part.mp4")
    try:
        ffmpeg.run(["-y", "-f", "concat", "-safe", "0", "-i", str(videolist), "-c", "copy", "-movflags", "+faststart",
                    "-f", "mp4", str(tmp)], what="joining snippets")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def verify(path: Path, expected_duration_s: float, *, tolerance_s: float | None = None) -> dict:
    """ffprobe the remix: one video stream, one audio stream, duration close to the snippets' sum."""
    info = ffmpeg.probe_json(path)
    kinds = [s["codec_type"] for s in info["streams"]]
    duration = float(info["format"]["duration"])
    tol = tolerance_s if tolerance_s is not None else 0.25 + 0.05 * max(1, round(expected_duration_s))
    problems = []
    if kinds.count("video") != 1 or kinds.count("audio") != 1:
        problems.append(f"expected one video and one audio stream, found {kinds}")
    if abs(duration - expected_duration_s) > tol:
        problems.append(f"duration {duration:.3f} s differs from the snippets' sum {expected_duration_s:.3f} s by more than {tol:.2f} s")
    if problems:
        raise ClockworkError(f"remix {path} failed verification: " + "; ".join(problems))
    return {"duration_s": duration, "streams": kinds}


# -- the record and the HTML report ---------------------------------------------------------------

def remix_document(out: Path, *, picks: Sequence[Pick], sources: dict[str, dict], selection: Selection,
                   label: str, order: str, no_clocks: Sequence[str] | None = None,
                   span: tuple[int, int] | None = None) -> dict:
    """What a remix is made of, as JSON: each snippet with its offset in the remix, the sources' scores and
    segments, what was left out and why, and the scanned videos with no clock. The catalog keeps it (the web
    UI's remix page) and out.html renders it."""
    offset, snippets = 0.0, []
    for p in picks:
        snippets.append({"name": p.name, "path": p.path, "source": p.source, "start_s": p.start_s, "end_s": p.end_s,
                         "score": p.score, "offset_s": round(offset, 3),
                         "clock_time": _hhmm(p.clock_minutes) if p.clock_minutes is not None else None})
        offset += p.duration_s
    left_out = [f"{d.name}: near-duplicate of {k.name}" for d, k in selection.dropped_duplicates]
    left_out += [f"{d.name}: over the per-source limit" for d in selection.dropped_per_source]
    left_out += [f"{d.name}: over the maximum duration" for d in selection.dropped_duration]
    doc = {"path": str(out), "label": label, "order": order, "snippets": snippets, "sources": sources,
           "left_out": left_out, "no_clocks": list(no_clocks) if no_clocks is not None else None}
    if span is not None or any(p.clock_minutes is not None for p in picks):
        start, minutes = span or (0, DIAL_MINUTES)
        doc["coverage"] = coverage(picks, start, minutes)
    return doc


def write_report(out_html: Path, document: dict, thumbs: dict[str, bytes]) -> Path:
    """out.html beside the remix: the web UI's remix page, standing alone (thumbnails inline, the player
    pointing at the file beside it)."""
    from clockwork.pages import remix_view, render

    def thumb(s: dict) -> str | None:
        data = thumbs.get(s["name"])
        return f"data:image/jpeg;base64,{base64.b64encode(data).decode()}" if data else None

    view = remix_view(document, video_url=Path(document["path"]).name, thumb_url=thumb)
    page = render("remix.html", remix=view, nav="remix", ui=None, docs_url=None)
    tmp = out_html.with_name(out_html.name + ".part")
    tmp.write_text(page)
    tmp.replace(out_html)
    return out_html
