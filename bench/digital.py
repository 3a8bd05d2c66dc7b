"""What the default does with digital clocks, which the time reader cannot read (it reads analog dials).

    python -m bench.digital                    # 8 clips per scale, seed 0, CPU

The default drops a clock track that was read and never found readable
(``clockwork.timeline.pipeline.drop_unreadable_tracks``).
A seven-segment display is a clock the reader does not read, so this measures what that check costs: clips of a
digital clock (an LED or LCD panel showing HH:MM, drawn here with OpenCV polygons, no font) at three scales on the
evaluation set's photographs (``clockwork.training.evalset``'s backgrounds, lighting, blur and grain), run at the
default,
at the default with the dials unread (``read_time=False``: nothing checked) and with COCO's heads at the old default.
It prints how many clips each finds per scale (a clip is found as ``evalset.score_clip`` says).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.settings import DETECT
from clockwork.timeline.pipeline import detect_video
from clockwork.training.clockface import composite
from clockwork.training.evalset import (  # the evaluation set's own look
    FPS,
    HEIGHT,
    SECONDS,
    WIDTH,
    EvalItem,
    _alpha_box,
    _background,
    _finish,
    _lighting,
    _write_clip,
    score_clip,
)

# panel width: "close" is most of the frame's height, as evalset's close dials are
SCALES = {"close": (0.8, 1.0), "medium": (300, 340), "small": (120, 160)}
SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}
LEDS = [(255, 40, 30), (60, 255, 90), (90, 170, 255), (255, 170, 40), (235, 235, 235)]
CONFIGS = {
    "default": {},
    "default, dials unread": {"read_time": False},
    "COCO's heads, full + zoomout + tiles, 0.5 (the old default)": {
        "head": "none",
        "views": ("full", "zoomout", "tiles"),
        "min_score": 0.5,
    },
}


def _segment_polys(x: float, y: float, w: float, h: float, t: float) -> dict[str, np.ndarray]:
    """The seven bars of one digit cell (top-left x, y; width w, height h; bar thickness t)."""
    m = y + h / 2

    def bar(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)

    return {
        "a": bar(x + t, y, x + w - t, y + t),
        "d": bar(x + t, y + h - t, x + w - t, y + h),
        "g": bar(x + t, m - t / 2, x + w - t, m + t / 2),
        "f": bar(x, y + t, x + t, m - t / 2),
        "b": bar(x + w - t, y + t, x + w, m - t / 2),
        "e": bar(x, m + t / 2, x + t, y + h - t),
        "c": bar(x + w - t, m + t / 2, x + w, y + h - t),
    }


def draw_digital_clock(text: str, width: int, rng: np.random.Generator) -> np.ndarray:
    """An RGBA panel of ``width`` px showing ``text`` ("HH:MM") in seven-segment digits, slanted at times."""
    height = int(width * rng.uniform(0.35, 0.5))
    s = 4  # drawn at 4x, then shrunk: smooth edges
    W, H = width * s, height * s
    panel = np.zeros((H, W, 4), np.uint8)
    body = tuple(int(v) for v in rng.integers(0, 60, size=3))
    cv2.rectangle(panel, (0, 0), (W - 1, H - 1), (*body, 255), -1)
    bezel = int(H * rng.uniform(0.04, 0.1))
    cv2.rectangle(panel, (0, 0), (W - 1, H - 1), (*[int(v) for v in rng.integers(60, 200, size=3)], 255), bezel)
    led = np.array(LEDS[rng.integers(len(LEDS))], np.float32) * rng.uniform(0.8, 1.0)
    ghost = rng.random() < 0.5  # unlit segments faintly visible, as on an LCD
    margin_y = H * 0.18
    dh = H - 2 * margin_y
    dw = dh * 0.5
    gap = dw * 0.3
    colon = dw * 0.4
    total = 4 * dw + 3 * gap + colon
    x = (W - total) / 2
    t = dh * rng.uniform(0.09, 0.13)
    for ch in text:
        if ch == ":":
            for cy in (margin_y + dh * 0.3, margin_y + dh * 0.7):
                cv2.circle(panel, (int(x + colon / 2), int(cy)), int(t * 0.6), (*led.astype(int).tolist(), 255), -1)
            x += colon
            continue
        polys = _segment_polys(x, margin_y, dw, dh, t)
        for name, poly in polys.items():
            on = name in SEGMENTS[ch]
            if not on and not ghost:
                continue
            colour = led if on else np.array(body, np.float32) * 0.6 + led * 0.12
            cv2.fillPoly(panel, [poly.astype(np.int32)], (*colour.astype(int).tolist(), 255), lineType=cv2.LINE_AA)
        x += dw + gap
    if rng.random() < 0.5:  # italic digits, as many displays have
        shear = np.float32([[1, -0.12, 0.06 * H], [0, 1, 0]])
        panel = cv2.warpAffine(panel, shear, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)


def write_set(directory: Path, per_scale: int, seed: int) -> list[EvalItem]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for scale, (lo, hi) in SCALES.items():
        for i in range(per_scale):
            width = int(rng.uniform(lo, hi) * HEIGHT) if scale == "close" else int(rng.uniform(lo, hi))
            text = f"{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}"
            thing = draw_digital_clock(text, width, rng)
            background, light, blur = _background(rng), _lighting(rng), float(rng.uniform(0.0, 1.2))
            x = int(rng.uniform(0.02, 0.98) * (WIDTH - thing.shape[1]))
            y = int(rng.uniform(0.02, 0.98) * (HEIGHT - thing.shape[0]))
            frames, boxes = [], []
            for k in range(int(FPS * SECONDS)):
                frames.append(_finish(composite(background, thing, x + k, y), rng, blur, light))
                boxes.append(_alpha_box(thing, x + k, y))
            out = directory / f"digital-{scale}-{i:02d}.mp4"
            _write_clip(frames, out)
            items.append(EvalItem(out.name, "clock", scale, boxes, text))
    return items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="var/digital", help="where the clips are rendered (again each run)")
    ap.add_argument("--per-scale", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    data = Path(args.data)
    items = write_set(data, args.per_scale, args.seed)
    detectors: dict = {}
    lines = [
        f"{len(items)} clips of {WIDTH}x{HEIGHT} at {FPS} frames/s, {SECONDS:g} s each: a seven-segment clock per "
        "clip, "
        f"{args.per_scale} per scale (panel width: close 0.8-1.0x the frame height, medium 300-340 px, small 120-160 "
        "px); "
        f"seed {args.seed}; device {args.device}.",
        "",
        "| config | " + " | ".join(f"found {s}" for s in SCALES) + " |",
        "|---" * (len(SCALES) + 1) + "|",
    ]
    for name, overrides in CONFIGS.items():
        overrides = dict(overrides)
        head = overrides.pop("head", DETECT.head)
        if head not in detectors:
            detectors[head] = Detector(device=args.device, half=args.device != "cpu", head=head)
        found = {s: 0 for s in SCALES}
        for item in items:
            found[item.scale] += score_clip(
                item, detect_video(data / item.name, detector=detectors[head], **overrides)
            )["found"]
        lines.append(f"| {name} | " + " | ".join(f"{found[s]}/{args.per_scale}" for s in SCALES) + " |")
        print(lines[-1], flush=True)
    record("bench/digital.py: digital clocks at the default, unread, and with COCO's heads", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
