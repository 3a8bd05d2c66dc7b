"""Coarse-to-fine scanning: look at a few frames a second, then at every frame only where something changes.

A long film mostly shows the same thing from one second to the next. The scan detects on a coarse grid
(``DETECT.scan_fps``, the first frame at or after each tick, as :class:`~clockwork.video.decode.SampleGrid`
picks them), finds the ticks where a label appears, disappears, or crosses between the hold threshold
and the start threshold (hysteresis), and decodes and detects every frame between such a tick and the
one before it. Segment boundaries then come from full-rate frames, as in every-frame mode; the rest of
the film was seen only at the coarse rate.

Why a segment is never lost or split: the coarse step is at most ``gap_s`` plus one frame (see
:func:`coarse_fps`), so two coarse hits of one clock join as two neighbouring frames would; and a
segment of at least ``min_length_s`` (0.5 s) always holds a coarse tick at 2 a second.

``detect_video`` (the CPU and NVDEC paths) and the API's chunk fan-out both run it through
:func:`refine_windows`; the result's ``scan`` field says which frames were examined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from clockwork.settings import DETECT, SEGMENTS


def coarse_fps(fps: float, gap_s: float = SEGMENTS.gap_s, scan_fps: float = DETECT.scan_fps) -> float:
    """The coarse rate: ``scan_fps``, raised where needed so that one step is at most ``gap_s`` plus one
    frame (two coarse hits of one clock must join into one segment)."""
    frame_s = 1.0 / fps if fps and fps > 0 else 0.0
    floor = 1.0 / (gap_s + frame_s) if gap_s + frame_s > 0 else float("inf")
    rate = max(float(scan_fps), floor)
    return min(rate, fps) if fps and fps > 0 else rate


def refine_windows(
    states: Iterable[tuple[float, str, int]], *, step_s: float, duration_s: float, frame_s: float
) -> list[tuple[float, float]]:
    """Where to look at every frame: time ranges ``[a, b)`` around each coarse tick whose state differs
    from its neighbour's. ``states`` are ``(timestamp_s, label, state)`` of the coarse frames with a
    detection, ``state`` 1 for a weak hit (hold threshold) and 2 for a strong one; a tick without an
    entry shows nothing. The coarse frame of tick k lies in ``[k step, k step + frame_s)``."""
    by_tick: dict[int, dict[str, int]] = {}
    for t, label, state in states:
        k = int(math.floor(t / step_s + 1e-6))
        cell = by_tick.setdefault(k, {})
        cell[label] = max(cell.get(label, 0), state)
    last_tick = int(math.floor(max(duration_s - 1e-6, 0.0) / step_s + 1e-6))
    windows: list[tuple[float, float]] = []
    for k in sorted(by_tick):
        for j in (k - 1, k + 1):  # a change between tick j and tick k
            if j < 0 or j > last_tick or by_tick.get(j, {}) == by_tick[k]:
                continue
            lo, hi = min(j, k), max(j, k)
            windows.append((lo * step_s, min(hi * step_s + 1.5 * frame_s, duration_s)))
        if k == last_tick and by_tick[k]:  # seen at the last tick: its end lies between it and the end of the video
            windows.append((k * step_s, duration_s))
    windows.sort()
    merged: list[tuple[float, float]] = []
    for a, b in windows:
        if b <= a:
            continue
        if merged and a <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return [(round(a, 6), round(b, 6)) for a, b in merged]


def scan_record(
    coarse: float, windows: list[tuple[float, float]], frames_coarse: int, frames_refined: int
) -> dict[str, Any]:
    """The result's ``scan`` field: which frames were examined."""
    return {
        "coarse_fps": round(coarse, 4),
        "refined": [[a, b] for a, b in windows],
        "frames_coarse": frames_coarse,
        "frames_refined": frames_refined,
    }


def resolve_mode(
    scan: bool | None,
    sample_fps: float | None,
    *,
    default_scan: bool = DETECT.scan,
    default_sample_fps: float | None = DETECT.sample_fps,
) -> tuple[bool, float | None]:
    """``(scan, sample_fps)`` from what a caller said; ``None`` is "not said", a ``sample_fps`` of 0 is every frame.

    Scanning is the default; naming a ``sample_fps`` asks for sampled mode (every frame at 0) and turns the scan
    off unless ``scan`` is said too, which is refused: a scan already chooses its frames."""
    if scan is None:
        scan = default_scan and sample_fps is None
    if scan and sample_fps is not None:
        raise ValueError(
            "sample_fps sets the rate of sampled mode, and a scan chooses its own frames: "
            "leave sample_fps out, or turn the scan off"
        )
    if scan:
        return True, None
    rate = default_sample_fps if sample_fps is None else sample_fps
    return False, (float(rate) or None) if rate else None
