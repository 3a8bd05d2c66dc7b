"""Where clips become a remix: pick unique snippets, concatenate them, verify, and report.

"Unique" means at most ``per_source`` snippets per source video (the original retried
``random.choice`` until it looped forever with fewer than 50 videos) and no two near-duplicate
snippets (perceptual hashes within ``max_distance`` bits: the same footage uploaded twice).
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clockwork.errors import ClockworkError
from clockwork.remix.clips import hash_distance
from clockwork.timeread.clocktime import DAY_MINUTES, day_clock, dial_clock, parse_day_time
from clockwork.timeread.clocktime import MINUTES as DIAL_MINUTES
from clockwork.video import ffmpeg

ORDERS = ("random", "source-time", "score", "time-of-day")
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


def select(
    snippets: Sequence[Pick],
    *,
    per_source: int = 1,
    order: str = "random",
    seed: int = 0,
    max_duration_s: float | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    start_minutes: int = 0,
    span_minutes: int = DIAL_MINUTES,
    meridiem: dict[str, str] | None = None,
) -> Selection:
    """Choose snippets deterministically for a given seed. ``time-of-day`` keeps the snippets whose clock
    was read inside ``span_minutes`` from ``start_minutes`` (minutes after midnight; a 12-hour reading fits
    a.m. and p.m., unless ``meridiem`` names its source's half) and orders them by that time, so the remix's
    clocks run forward, as in The Clock (:func:`place` then lays them on the remix's own clock)."""
    if order not in ORDERS:
        raise ValueError(f"Invalid order ({order!r}). Supported values are {', '.join(ORDERS)}.")
    if order == "time-of-day":
        if not 1 <= span_minutes <= DAY_MINUTES:
            raise ValueError(f"Invalid span ({span_minutes}). Supported values are 1 to {DAY_MINUTES} minutes.")
        snippets = [p for p in snippets if _offsets(p, start_minutes, span_minutes, meridiem)]
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
        twin = next(
            (k for k in kept if pick.phash and k.phash and hash_distance(pick.phash, k.phash) <= max_distance), None
        )
        if twin is not None:
            dropped_dup.append((pick, twin))
            continue
        kept.append(pick)
        per[pick.source] = per.get(pick.source, 0) + 1
    if order == "source-time":
        kept.sort(key=lambda p: (p.source, p.start_s))
    elif order == "time-of-day":
        kept.sort(
            key=lambda p: (_offsets(p, start_minutes, span_minutes, meridiem)[0], -p.score, p.source, p.start_s, p.name)
        )
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


GAP_RULES = ("card", "skip")
MIN_PLAY_S = 0.5  # a snippet with less of its minute left than this is left out (the shortest segment)


@dataclass(frozen=True)
class Placed:
    """One stretch of a time-of-day remix, from ``offset_s`` for ``duration_s``: the first ``duration_s`` of a
    snippet (``pick``; trimmed where it would outrun its clock), or a card showing the time (``pick`` None).
    ``shows`` is the time of day at its start in minutes after midnight (0..1439), as the remix's clock runs."""

    offset_s: float
    duration_s: float
    pick: Pick | None
    shows: int

    @property
    def trimmed(self) -> bool:
        return self.pick is not None and self.duration_s < self.pick.duration_s - 1e-3


@dataclass
class Placement:
    stretches: list[Placed]
    full_minute: list[Pick]  # its minute was already taken up by other snippets
    start: int  # minutes after midnight
    span: int  # minutes

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.stretches)


def place(
    picks: Sequence[Pick], *, start: int, span: int, gaps: str = "card", meridiem: dict[str, str] | None = None
) -> Placement:
    """Lay snippets on the remix's own clock, as in The Clock: the remix starts at ``start`` (minutes after
    midnight) and lasts ``span`` minutes; at its running time t it is ``start + t`` o'clock.

    A snippet whose clock reads M (a 12-hour dial) goes to the first minute of the span that is M a.m. or M p.m.
    (only the one that ``meridiem`` gives for its source, "am" or "pm", where it gives one), at the minute's
    start or after the snippets already there, and is trimmed so that it ends with that minute: the remix's
    clock then shows the minute its clock was read at for as long as it plays, so the error on screen is the
    reader's own (a still dial included). A snippet whose minute is already full is left out.

    ``gaps``: "card" fills the minutes no snippet covers with a black card showing the running time (the remix
    lasts exactly ``span`` minutes); "skip" plays the snippets back to back, in time order, without cards
    (shorter, but its clocks no longer follow its running time)."""
    if gaps not in GAP_RULES:
        raise ValueError(f"Invalid gap rule ({gaps!r}). Supported values are {', '.join(GAP_RULES)}.")
    if not 1 <= span <= DAY_MINUTES:
        raise ValueError(f"Invalid span ({span}). Supported values are 1 to {DAY_MINUTES} minutes.")
    meridiem = meridiem or {}
    slotted = [(offsets, p) for p in picks if (offsets := _offsets(p, start, span, meridiem))]
    slotted.sort(key=lambda sp: (sp[0][0], -sp[1].score, sp[1].source, sp[1].start_s, sp[1].name))
    stretches: list[Placed] = []
    full: list[Pick] = []
    cursor = 0.0
    for offsets, p in slotted:
        slot = offsets[0]  # the first time of day it can stand for (a.m. before p.m. in a span over both)
        if gaps == "card" and cursor > slot * 60.0 + 60.0 - MIN_PLAY_S:
            full.append(p)
            continue
        begin = cursor if gaps == "skip" else max(cursor, slot * 60.0)
        length = p.duration_s if gaps == "skip" else min(p.duration_s, slot * 60.0 + 60.0 - begin)
        if begin > cursor + 1e-6:
            stretches.append(Placed(round(cursor, 3), round(begin - cursor, 3), None, _running(start, cursor)))
        stretches.append(
            Placed(
                round(begin, 3),
                round(length, 3),
                p,
                (start + slot) % DAY_MINUTES if gaps == "skip" else _running(start, begin),
            )
        )
        cursor = begin + length
    if gaps == "card" and cursor < span * 60.0 - 1e-6:
        stretches.append(Placed(round(cursor, 3), round(span * 60.0 - cursor, 3), None, _running(start, cursor)))
    return Placement(stretches, full, start, span)


def default_span(picks: Sequence[Pick], meridiem: dict[str, str] | None = None) -> tuple[int, int]:
    """(start, span) when the user gives none: the shortest stretch of the 12-hour dial that holds every
    reading (it starts after the widest gap between readings), through the last reading plus a minute, in the
    a.m. unless every source with a reading is known to be p.m."""
    readings = sorted({int(p.clock_minutes) % DIAL_MINUTES for p in picks if p.clock_minutes is not None})
    if not readings:
        raise ValueError("no snippet has a trusted reading of its clock: nothing to order by time of day")
    if len(readings) == 1:
        first, length = readings[0], 0
    else:
        gaps = [((readings[(i + 1) % len(readings)] - r) % DIAL_MINUTES, i) for i, r in enumerate(readings)]
        widest, i = max(gaps)
        first = readings[(i + 1) % len(readings)]
        length = DIAL_MINUTES - widest
    halves = {(meridiem or {}).get(p.source) for p in picks if p.clock_minutes is not None}
    start = first + (DIAL_MINUTES if halves == {"pm"} else 0)
    return start, min(length + 2, DAY_MINUTES)


def time_span(
    picks: Sequence[Pick], *, start: str | None = None, span: int | None = None, meridiem: dict[str, str] | None = None
) -> tuple[int, int]:
    """(start, span) of a time-of-day remix from what the user gave: ``start`` "HH:MM" (24-hour) and ``span``
    minutes; what is missing comes from :func:`default_span`. A start without a span runs on through the
    last reading, as the default span does."""
    if start is not None and span is not None:
        return parse_day_time(start), span
    auto_start, auto_span = default_span(picks, meridiem)
    if start is None:
        return auto_start, auto_span if span is None else span
    given = parse_day_time(start)
    return given, (auto_start + auto_span - given) % DAY_MINUTES or DAY_MINUTES


def _offsets(p: Pick, start: int, span: int, meridiem: dict[str, str] | None) -> list[int]:
    """Minutes from ``start`` to each time of day ``p``'s reading can stand for, inside the span, earliest first."""
    return sorted(o for o in ((m - start) % DAY_MINUTES for m in _day_minutes(p, meridiem or {})) if o < span)


def _day_minutes(p: Pick, meridiem: dict[str, str]) -> list[int]:
    """The times of day a 12-hour reading can stand for: both, or the one its source's a.m./p.m. says."""
    if p.clock_minutes is None:
        return []
    m = int(p.clock_minutes) % DIAL_MINUTES
    half = meridiem.get(p.source)
    return [m] if half == "am" else [m + DIAL_MINUTES] if half == "pm" else [m, m + DIAL_MINUTES]


def _running(start: int, offset_s: float) -> int:
    return int(start + offset_s // 60) % DAY_MINUTES


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
    return {
        "start": dial_clock(start_minutes),
        "span_minutes": span_minutes,
        "covered_minutes": sum(covered),
        "share": round(sum(covered) / span_minutes, 4),
        "gaps": _gaps(covered, start_minutes, dial_clock),
    }


def _gaps(covered: list[bool], start: int, clock) -> list[dict]:
    """The runs of uncovered minutes: where each begins (``clock(start + minute)``) and how long it lasts."""
    out, m = [], 0
    while m < len(covered):
        if covered[m]:
            m += 1
            continue
        n = m
        while n < len(covered) and not covered[n]:
            n += 1
        out.append({"from": clock(start + m), "minutes": n - m})
        m = n
    return out


def placement_coverage(placement: Placement, gaps: str = "card") -> dict:
    """Which minutes of a time-of-day remix's span show a clock: with cards, the minutes of the remix's own
    clock during which a snippet plays; without, the minutes its clocks read (each for as long as it plays)."""
    span, covered = placement.span, [False] * placement.span
    for st in placement.stretches:
        if st.pick is None:
            continue
        if gaps == "card":
            first, last = int(st.offset_s // 60), int((st.offset_s + st.duration_s - 1e-6) // 60)
        else:
            first = (st.shows - placement.start) % DAY_MINUTES
            last = first + max(1, math.ceil(st.duration_s / 60)) - 1
        for m in range(first, min(last, span - 1) + 1):
            covered[m] = True
    return {
        "start": day_clock(placement.start),
        "span_minutes": span,
        "covered_minutes": sum(covered),
        "share": round(sum(covered) / span, 4),
        "gaps": _gaps(covered, placement.start, day_clock),
        "gap_rule": gaps,
    }


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


def concat(videolist: Path, out: Path, *, on_progress: Callable[[float], None] | None = None) -> Path:
    """``ffmpeg -f concat -safe 0 -i videolist.txt -c copy out.mp4``, to a temporary name first;
    ``on_progress(seconds)`` sees how far it has written."""
    tmp = out.with_name(f".{out.stem}.part.mp4")
    try:
        ffmpeg.run(
            [
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(videolist),
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
                str(tmp),
            ],
            what="joining snippets",
            on_progress=on_progress,
        )
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
        problems.append(
            f"duration {duration:.3f} s differs from the snippets' sum {expected_duration_s:.3f} s by more than "
            f"{tol:.2f} s"
        )
    if problems:
        raise ClockworkError(f"remix {path} failed verification: " + "; ".join(problems))
    return {"duration_s": duration, "streams": kinds}


# -- the record and the HTML report ---------------------------------------------------------------


def remix_document(
    out: Path,
    *,
    picks: Sequence[Pick],
    sources: dict[str, dict],
    selection: Selection,
    label: str,
    order: str,
    no_clocks: Sequence[str] | None = None,
    span: tuple[int, int] | None = None,
    placement: Placement | None = None,
    gaps: str = "card",
) -> dict:
    """What a remix is made of, as JSON: each snippet with its offset in the remix, the sources' scores and
    segments, what was left out and why, and the scanned videos with no clock. The catalog keeps it (the web
    UI's remix page) and out.html renders it. A time-of-day remix (``placement``) also lists its cards, and each
    snippet the seconds it plays (``played_s``, after trimming) and the remix's clock when it starts (``runs_at``)."""
    snippets, cards = [], []
    if placement is not None:
        for st in placement.stretches:
            if st.pick is None:
                cards.append({"offset_s": st.offset_s, "duration_s": st.duration_s, "shows": day_clock(st.shows)})
                continue
            p = st.pick
            snippets.append(
                {
                    "name": p.name,
                    "path": p.path,
                    "source": p.source,
                    "start_s": p.start_s,
                    "end_s": p.end_s,
                    "score": p.score,
                    "offset_s": st.offset_s,
                    "played_s": st.duration_s,
                    "runs_at": day_clock(st.shows) if gaps == "card" else None,
                    "clock_time": dial_clock(p.clock_minutes) if p.clock_minutes is not None else None,
                }
            )
    else:
        offset = 0.0
        for p in picks:
            snippets.append(
                {
                    "name": p.name,
                    "path": p.path,
                    "source": p.source,
                    "start_s": p.start_s,
                    "end_s": p.end_s,
                    "score": p.score,
                    "offset_s": round(offset, 3),
                    "played_s": round(p.duration_s, 3),
                    "clock_time": dial_clock(p.clock_minutes) if p.clock_minutes is not None else None,
                }
            )
            offset += p.duration_s
    left_out = [f"{d.name}: near-duplicate of {k.name}" for d, k in selection.dropped_duplicates]
    left_out += [f"{d.name}: over the per-source limit" for d in selection.dropped_per_source]
    left_out += [f"{d.name}: over the maximum duration" for d in selection.dropped_duration]
    if placement is not None:
        left_out += [
            f"{d.name}: its minute ({dial_clock(d.clock_minutes)}) is already full" for d in placement.full_minute
        ]
    doc = {
        "path": str(out),
        "label": label,
        "order": order,
        "snippets": snippets,
        "sources": sources,
        "left_out": left_out,
        "no_clocks": list(no_clocks) if no_clocks is not None else None,
        "duration_s": round(placement.duration_s if placement is not None else sum(p.duration_s for p in picks), 3),
    }
    if placement is not None:
        doc["cards"] = cards
        doc["coverage"] = placement_coverage(placement, gaps)
    elif span is not None or any(p.clock_minutes is not None for p in picks):
        start, minutes = span or (0, DIAL_MINUTES)
        doc["coverage"] = coverage(picks, start, minutes)
    return doc


def write_report(out_html: Path, document: dict, thumbs: dict[str, bytes]) -> Path:
    """out.html beside the remix: the web UI's remix page, standing alone (thumbnails inline, the player
    pointing at the file beside it)."""
    from clockwork.remix.pages import remix_view, render

    def thumb(s: dict) -> str | None:
        data = thumbs.get(s["name"])
        return f"data:image/jpeg;base64,{base64.b64encode(data).decode()}" if data else None

    view = remix_view(document, video_url=Path(document["path"]).name, thumb_url=thumb)
    page = render("remix.html", remix=view, nav="remix", ui=None, docs_url=None)
    tmp = out_html.with_name(out_html.name + ".part")
    tmp.write_text(page)
    tmp.replace(out_html)
    return out_html
