"""Multi-scale views of a frame: where in the frame the model looks, and at what zoom.

YOLOv3-tiny at 416 was trained on COCO, where clocks are mostly mid-sized. Film has extreme close-ups
(a clock face that fills and overflows the frame) and wide shots with small wall clocks. So each frame
can be shown to the model several ways, and the boxes of every view are mapped back to source pixels
and merged (``Detector.postprocess``: class-aware NMS, then a box mostly inside a higher-scoring box of
the same class is dropped):

- ``full``: the whole frame, letterboxed (what the model always saw);
- ``zoomout``: the whole frame shrunk to ``ZOOM_OUT`` of the input inside a grey canvas, so a
  frame-filling clock looks like the clocks the model was trained on;
- ``tiles``: a 2 x 2 grid of overlapping crops (each ``TILE_FRACTION`` of the frame's width and height),
  each letterboxed to the full input, so a small clock is seen about 1.7x larger.

Every view sees every examined frame, except where every frame is examined (every-frame mode, a scan's
refined windows): there the views after the first run on every ``view_stride``-th frame only
(``DETECT.multiscale_fps`` a second), which is what makes every-frame detection affordable.

A view is a region of the source frame plus a zoom; ``clockwork.detect.boxes.view_letterbox`` turns it into
the letterbox that maps boxes back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from clockwork.settings import DETECT

VIEW_NAMES = ("full", "zoomout", "tiles")
ZOOM_OUT = 0.5
TILE_FRACTION = 0.6  # two tiles per axis overlap by 20% of the frame: a clock up to that size is whole in one


@dataclass(frozen=True)
class View:
    name: str
    x0: int
    y0: int
    w: int
    h: int
    zoom: float = 1.0


def parse_views(views: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate a list of view names (or one comma-separated string); order is normalised, duplicates dropped."""
    if views is None:
        return ("full",)
    names = [v.strip() for v in views.split(",")] if isinstance(views, str) else [str(v).strip() for v in views]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in VIEW_NAMES]
    if unknown or not names:
        raise ValueError(
            f"Invalid views ({list(views) if not isinstance(views, str) else views!r}). "
            f"Supported values are one or more of {', '.join(VIEW_NAMES)}."
        )
    return tuple(n for n in VIEW_NAMES if n in names)


def plan_views(names: Iterable[str], width: int, height: int) -> list[View]:
    """The views of one ``width`` x ``height`` frame, in a fixed order."""
    out: list[View] = []
    for name in parse_views(tuple(names)):
        if name == "full":
            out.append(View("full", 0, 0, width, height))
        elif name == "zoomout":
            out.append(View("zoomout", 0, 0, width, height, ZOOM_OUT))
        else:
            tw, th = int(round(width * TILE_FRACTION)), int(round(height * TILE_FRACTION))
            for y0 in (0, height - th):
                for x0 in (0, width - tw):
                    out.append(View("tiles", x0, y0, tw, th))
    return out


def view_stride(
    fps: float | None, sample_fps: float | None, multiscale_fps: float | None = DETECT.multiscale_fps
) -> int:
    """Every how many decoded frames the views after the first run: frames whose number is a multiple of the
    stride get every view. 1 (every examined frame) in sampled mode (``sample_fps`` set) or when
    ``multiscale_fps`` is None or 0; else ``fps / multiscale_fps`` rounded, so about ``multiscale_fps`` a second."""
    if multiscale_fps is not None and not (multiscale_fps >= 0 and math.isfinite(multiscale_fps)):
        raise ValueError(
            f"Invalid multiscale_fps ({multiscale_fps!r}). Supported values are None or 0 (every frame) and positive "
            "rates."
        )
    if sample_fps or not multiscale_fps or not fps or fps <= 0:
        return 1
    return max(1, int(round(float(fps) / float(multiscale_fps))))
