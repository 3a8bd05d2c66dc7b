"""The time an analog dial shows, as the reader gives it and as results, segments and the catalog keep it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MINUTES = 720  # a 12-hour dial
DAY_MINUTES = 1440  # a day, the remix's clock


@dataclass(frozen=True, slots=True)
class ClockTime:
    """A time read off an analog dial: ``minutes`` 0..719 after 12:00 on a 12-hour dial; ``confidence`` is
    the reader's probability of that minute +-1; ``readable`` its probability that the dial can be read."""

    minutes: int
    confidence: float
    readable: float = 1.0

    @property
    def hhmm(self) -> str:
        return dial_clock(self.minutes)

    def to_json(self) -> dict[str, Any]:
        return {
            "minutes": self.minutes,
            "hhmm": self.hhmm,
            "confidence": round(self.confidence, 4),
            "readable": round(self.readable, 4),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> ClockTime | None:
        return None if d is None else cls(int(d["minutes"]), float(d["confidence"]), float(d.get("readable", 1.0)))


def dial_clock(minutes: int) -> str:
    """Minutes on the 12-hour dial as "H:MM" (0 is 12:00)."""
    h, m = divmod(int(minutes) % MINUTES, 60)
    return f"{h or 12}:{m:02d}"


def day_clock(minutes: int) -> str:
    """Minutes after midnight as a 24-hour "HH:MM"."""
    h, m = divmod(int(minutes) % DAY_MINUTES, 60)
    return f"{h:02d}:{m:02d}"


def _hours_minutes(text: str, max_hour: int, supported: str) -> tuple[int, int]:
    try:
        h, m = (int(v) for v in text.strip().split(":"))
    except ValueError:
        h = m = -1
    if not (0 <= h <= max_hour and 0 <= m < 60):
        raise ValueError(f"Invalid time ({text!r}). Supported values {supported}.")
    return h, m


def hhmm_to_minutes(text: str) -> int:
    """ "H:MM" or "HH:MM" (24-hour accepted) -> minutes 0..719 on a 12-hour dial."""
    h, m = _hours_minutes(text, 24, "look like 10:10 or 22:10")
    return (h % 12) * 60 + m


def parse_day_time(text: str) -> int:
    """ "HH:MM" on a 24-hour clock -> minutes after midnight (10:10 is a.m., 22:10 p.m.)."""
    h, m = _hours_minutes(text, 23, "are HH:MM on a 24-hour clock, like 10:10 or 22:10")
    return h * 60 + m


def circular_error(a: int, b: int) -> int:
    """Minutes between two readings on a 12-hour dial (0..360)."""
    d = abs(int(a) - int(b)) % MINUTES
    return min(d, MINUTES - d)


def fuse(readings: Sequence[tuple[float, ClockTime]], *, threshold: float = 0.5) -> ClockTime | None:
    """One reading for a clock seen at several times ``(t_seconds, reading)`` while the clip plays.

    Each readable reading votes for the time at t = 0 (its minutes minus the seconds elapsed, as a clock
    advances with the film); the vote is weighted by confidence and taken on the circle, so 11:59 and
    12:00 agree. Returns the fused time at the first reading's moment, or None when nothing is readable."""
    good = [(t, r) for t, r in readings if r.readable >= threshold]
    if not good:
        return None
    t0 = good[0][0]
    angles = [
        (2 * math.pi * ((r.minutes - (t - t0) / 60.0) % MINUTES) / MINUTES, r.confidence * r.readable) for t, r in good
    ]
    sx = sum(w * math.cos(a) for a, w in angles)
    sy = sum(w * math.sin(a) for a, w in angles)
    minutes = int(round((math.atan2(sy, sx) % (2 * math.pi)) / (2 * math.pi) * MINUTES)) % MINUTES
    agree = [r for t, r in good if circular_error(minutes, round(r.minutes - (t - t0) / 60.0)) <= 1]
    confidence = sum(r.confidence for r in agree) / len(good)
    return ClockTime(minutes, confidence, max(r.readable for _, r in good))
