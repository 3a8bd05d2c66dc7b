"""Progress a person can trust: in video seconds, stage by stage, with a rate and an ETA.

A long step (a scan's coarse pass, its refined windows, cutting snippets, rendering cards, joining) is a
stage with a total fixed when it starts, so neither the total nor the ETA jumps within it. On a terminal
it is a bar; off one (pipes, ``ray job logs``) a line every ``every_s`` seconds and one when a stage ends:

    film.mp4 (scan): 12.0/40.0 video s (30%), 3.1 video s/s, ETA 00:00:09
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

EVERY_S = 10.0  # progress lines off a terminal
LONG_STAGE_S = 10.0  # a bar only for stages of more video seconds than this


def hms(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.mmm``."""
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


class Progress:
    """Progress in video seconds, stage by stage (a scan's coarse pass, then its refined windows): a bar on a
    terminal; off one, a line every EVERY_S with the stage's rate in video seconds a second and its ETA.
    A stage's total is fixed when it starts, so neither the total nor the ETA jumps within it."""

    def __init__(self, name: str, *, every_s: float = EVERY_S, stream: TextIO | None = None):
        self.name, self.every_s = name, every_s
        self.stream = stream or sys.stderr
        self.stage: str | None = None
        self.bar = None

    def _begin(self, stage: str, total_s: float) -> None:
        self.close()
        self.stage, self.total_s = stage, total_s
        self.t0 = self.last = time.monotonic()
        self.done_s = 0.0
        if self.stream.isatty() and total_s >= LONG_STAGE_S:
            from tqdm import tqdm

            self.bar = tqdm(
                total=round(total_s, 1),
                unit="video s",
                desc=f"{self.name} ({stage})",
                file=self.stream,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} video s [{elapsed}<{remaining}, {rate_fmt}]",
            )

    def __call__(self, done_s: float, total_s: float, stage: str) -> None:
        if stage != self.stage:
            self._begin(stage, total_s)
        if self.bar is not None:
            self.bar.update(round(done_s - self.bar.n, 1))
            self.done_s = done_s
            return
        now = time.monotonic()
        finished = done_s >= total_s and self.done_s < total_s
        self.done_s = done_s
        if now - self.last >= self.every_s or (finished and now - self.t0 >= min(self.every_s, 1.0)):
            self.last = now
            print(self.line(done_s, now - self.t0), file=self.stream, flush=True)

    def line(self, done_s: float, elapsed_s: float) -> str:
        rate = done_s / elapsed_s if elapsed_s > 0 else 0.0
        eta = hms((self.total_s - done_s) / rate)[:8] if rate > 0 and self.total_s > done_s else "00:00:00"
        pct = f" ({100 * done_s / self.total_s:.0f}%)" if self.total_s else ""
        return (
            f"{self.name} ({self.stage}): {done_s:.1f}/{self.total_s:.1f} video s{pct}, {rate:.1f} video s/s, ETA {eta}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
