"""The pages people look at, rendered on the server with Jinja2 (autoescaped: file names and labels are
untrusted text). The web UI (``serve_app.ui``) and the remix report of ``jobs.join`` (out.html) share
these templates (``clockwork/templates``) and the helpers below. No JavaScript, no CDN: the pages
work offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from clockwork.timeline.result import Segment, VideoResult

_ENV = Environment(
    loader=PackageLoader("clockwork", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def hms(seconds: float | None) -> str:
    """Seconds as HH:MM:SS (a time axis a person reads)."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def hms_cs(seconds: float | None) -> str:
    """Seconds as HH:MM:SS.ss, for a segment's ends (whole seconds would show 0.52 s as 00:00:01)."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    cs = int(round(max(seconds, 0.0) * 100))
    return f"{hms(cs // 100)}.{cs % 100:02d}"


_ENV.filters["hms"] = hms
_ENV.filters["hms_cs"] = hms_cs


def render(template: str, **context) -> str:
    return _ENV.get_template(template).render(**context)


@dataclass(frozen=True)
class Timeline:
    """A time axis ``duration_s`` long drawn ``width`` pixels wide, with ticks at a round step."""

    duration_s: float
    width: int = 900
    height: int = 56

    def x(self, t: float) -> float:
        return (
            round(self.width * min(max(t, 0.0), self.duration_s) / self.duration_s, 1) if self.duration_s > 0 else 0.0
        )

    def w(self, a: float, b: float) -> float:
        return max(round(self.x(b) - self.x(a), 1), 1.0)

    @property
    def ticks(self) -> list[tuple[float, str]]:
        if self.duration_s <= 0:
            return [(0.0, hms(0))]
        step = next(
            (s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200) if self.duration_s / s <= 8),
            14400,
        )
        return [(self.x(t), hms(t)) for t in range(0, int(self.duration_s) + 1, step)]


def segment_frames(result: VideoResult, segment: Segment) -> dict[str, int]:
    """The frames a person looks at for a segment: where it starts, peaks and ends (frames with detections)."""
    inside = [
        f
        for f in result.frame_data
        if segment.start_frame <= f.frame_no <= segment.end_frame
        and any(d.label == segment.label for d in f.detections)
    ]
    if not inside:
        return {"start": segment.start_frame}
    middle = (inside[0].frame_no + inside[-1].frame_no) / 2
    # ties (a clock at score 1.0 throughout) go to the frame nearest the middle, not the first
    peak = max(inside, key=lambda f: (round(f.best_score(segment.label), 3), -abs(f.frame_no - middle)))
    return {"start": inside[0].frame_no, "peak": peak.frame_no, "end": inside[-1].frame_no}


def uncovered(placed: list[dict], duration_s: float, *, min_s: float = 0.05) -> list[tuple[float, float]]:
    """The stretches of ``[0, duration_s)`` that no placed piece covers (at least ``min_s`` long)."""
    gaps, at = [], 0.0
    for piece in sorted(placed, key=lambda p: p["start_s"]):
        if piece["start_s"] - at >= min_s:
            gaps.append((at, piece["start_s"]))
        at = max(at, piece["end_s"])
    if duration_s - at >= min_s:
        gaps.append((at, duration_s))
    return gaps


def remix_view(doc: dict, *, video_url: str, thumb_url=None, source_url=None) -> dict:
    """What remix.html shows, from a remix document (``clockwork.remix.remix_document``). ``thumb_url(snippet)``
    and ``source_url(source_path)`` give links (None: none)."""
    from pathlib import Path

    snippets = []
    for s in doc["snippets"]:
        snippets.append(
            {
                **s,
                "source_name": Path(s["source"]).name,
                "thumb_url": thumb_url(s) if thumb_url else None,
                "source_url": source_url(s["source"]) if source_url else None,
            }
        )
    duration = doc.get("duration_s") or sum(s["end_s"] - s["start_s"] for s in doc["snippets"])
    placed = [
        {
            "label": Path(s["source"]).name,
            "start_s": s["offset_s"],
            "kind": "snippet",
            "end_s": s["offset_s"] + s.get("played_s", s["end_s"] - s["start_s"]),
        }
        for s in doc["snippets"]
    ]
    placed += [
        {
            "label": f"card {c['shows']}",
            "start_s": c["offset_s"],
            "end_s": c["offset_s"] + c["duration_s"],
            "kind": "card",
        }
        for c in doc.get("cards") or []
    ]
    placed += [{"label": "gap", "start_s": a, "end_s": b, "kind": "gap"} for a, b in uncovered(placed, duration)]
    placed.sort(key=lambda p: p["start_s"])
    used = {(s["source"], round(s["start_s"], 3)) for s in doc["snippets"]}
    sources = []
    for path, info in sorted(doc["sources"].items()):
        sources.append(
            {
                "name": Path(path).name,
                "url": source_url(path) if source_url else None,
                "timeline": Timeline(info["duration_s"]),
                "scores": info["frames"],
                "segments": [
                    {"label": Path(path).name, "start_s": a, "end_s": b, "used": (path, round(a, 3)) in used}
                    for a, b in info["segments"]
                ],
            }
        )
    return {
        "name": Path(doc["path"]).name,
        "video_url": video_url,
        "snippets": snippets,
        "duration_s": duration,
        "label": doc.get("label"),
        "order": doc.get("order"),
        "timeline": Timeline(duration),
        "placed": placed,
        "sources": sources,
        "left_out": doc.get("left_out", []),
        "no_clocks": [Path(p).name for p in doc["no_clocks"]] if doc.get("no_clocks") is not None else None,
        "any_time": any(s.get("clock_time") for s in doc["snippets"]),
        # the dial's coverage means something only where the remix keeps the time of day
        "coverage": doc.get("coverage") if doc.get("order") == "time-of-day" else None,
        "cards": doc.get("cards"),
        "runs_at": any(s.get("runs_at") for s in doc["snippets"]),
    }
