"""Where clips become a remix: pick unique snippets, concatenate them, verify, and report.

"Unique" means at most ``per_source`` snippets per source video (the original retried
``random.choice`` until it looped forever with fewer than 50 videos) and no two near-duplicate
snippets (perceptual hashes within ``max_distance`` bits: the same footage uploaded twice).
"""

from __future__ import annotations

import base64
import html
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clockwork import ffmpeg
from clockwork.clips import hash_distance
from clockwork.errors import ClockworkError

ORDERS = ("random", "source-time", "score")
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
           max_duration_s: float | None = None, max_distance: int = DEFAULT_MAX_DISTANCE) -> Selection:
    """Choose snippets deterministically for a given seed."""
    if order not in ORDERS:
        raise ValueError(f"Invalid order ({order!r}). Supported values are {', '.join(ORDERS)}.")
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


# -- the HTML report ---------------------------------------------------------------------------

def _timeline_svg(frames: list[tuple[float, float]], segments: list[tuple[float, float, bool]], duration: float,
                  width: int = 720, height: int = 60) -> str:
    """Scores over time as bars, with cut segments shaded (used ones darker)."""
    if duration <= 0:
        return ""
    sx = width / duration
    parts = [f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<rect width="{width}" height="{height}" fill="#f4f4f4"/>']
    for start, end, used in segments:
        parts.append(f'<rect x="{start * sx:.1f}" y="0" width="{max((end - start) * sx, 1):.1f}" height="{height}" '
                     f'fill="{"#f2b84b" if used else "#f7dfae"}"><title>{start:.2f}-{end:.2f} s</title></rect>')
    for t, score in frames:
        h = score * (height - 4)
        parts.append(f'<rect x="{t * sx:.1f}" y="{height - h:.1f}" width="1.2" height="{h:.1f}" fill="#2a5d9f"/>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(out_html: Path, *, remix: Path, picks: Sequence[Pick], thumbs: dict[str, bytes],
                 sources: dict[str, dict], selection: Selection) -> Path:
    """A page a person can look at: the remix, each snippet with a thumbnail, and a timeline per source.
    ``sources`` maps a source path to ``{"duration_s", "frames": [(t, score)], "segments": [(start, end)]}``."""
    used = {(p.source, round(p.start_s, 3)) for p in picks}
    e = html.escape
    rows = []
    for i, p in enumerate(picks, 1):
        img = base64.b64encode(thumbs[p.name]).decode() if p.name in thumbs else ""
        rows.append(f'<tr class="snippet" data-name="{e(p.name)}"><td>{i}</td><td><img alt="" src="data:image/jpeg;base64,{img}"></td>'
                    f'<td>{e(Path(p.source).name)}</td><td>{p.start_s:.3f}</td><td>{p.end_s:.3f}</td>'
                    f'<td>{p.score:.2f}</td><td>{e(p.name)}</td></tr>')
    timelines = []
    for src, info in sorted(sources.items()):
        segs = [(a, b, (src, round(a, 3)) in used) for a, b in info["segments"]]
        timelines.append(f'<h3>{e(Path(src).name)}</h3>' + _timeline_svg(info["frames"], segs, info["duration_s"]))
    dropped = "".join(f"<li>{e(d.name)}: near-duplicate of {e(k.name)}</li>" for d, k in selection.dropped_duplicates)
    dropped += "".join(f"<li>{e(d.name)}: over the per-source limit</li>" for d in selection.dropped_per_source)
    dropped += "".join(f"<li>{e(d.name)}: over the maximum duration</li>" for d in selection.dropped_duration)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clockwork remix: {e(remix.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}td,th{{padding:4px 8px;text-align:left}}
img{{width:160px}}svg{{display:block;margin-bottom:1em}}</style></head><body>
<h1>Clockwork remix</h1>
<video controls width="960" src="{e(remix.name)}"></video>
<p>{len(picks)} snippets, {sum(p.duration_s for p in picks):.2f} s.</p>
<h2>Snippets</h2>
<table><tr><th>#</th><th>frame</th><th>source</th><th>start s</th><th>end s</th><th>score</th><th>file</th></tr>
{''.join(rows)}</table>
<h2>Detection scores per source</h2><p>Blue: best score per frame. Shaded: cut segments (dark: used in the remix).</p>
{''.join(timelines)}
<h2>Left out</h2><ul>{dropped or '<li>nothing</li>'}</ul>
</body></html>
"""
    tmp = out_html.with_name(out_html.name + ".part")
    tmp.write_text(page)
    tmp.replace(out_html)
    return out_html

