"""Analog clock faces of many styles, drawn at a known time: data for evaluating the detector and for
training the time reader.

    style = random_style(np.random.default_rng(1), split="eval")
    rgba = draw_clock_face(style, hour=10, minute=10, second=None, size=256)

A style is a point in a small design space: dial shape (round, square, octagon), face and rim colours,
single or double rim, markers (Arabic or Roman numerals, bars, dots, ticks or nothing) in one of
OpenCV's Hershey typefaces, minute ticks, hand shape (line, tapered, arrow; and for training only leaf,
lollipop, baton and outline), hand colours and lengths, a second hand or not, and a wrist-watch strap.
``split`` keeps styles apart (``random_style``): what training draws never uses the typefaces, palettes,
arrow hands or octagonal dials of the test sets (its random palettes stay away from the test palettes).
Drawing supersamples 2x and downscales with area interpolation (anti-aliased).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

HERSHEY_TRAIN = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_TRIPLEX)
HERSHEY_EVAL = (cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)
ROMAN = ("XII", "I", "II", "III", "IIII", "V", "VI", "VII", "VIII", "IX", "X", "XI")

# (face, ink) pairs; eval palettes are kept out of training
PALETTES_TRAIN = (
    ((245, 245, 240), (20, 20, 20)),
    ((250, 240, 215), (40, 30, 20)),
    ((30, 30, 35), (235, 235, 235)),
    ((230, 235, 245), (10, 30, 80)),
    ((255, 255, 255), (0, 0, 0)),
)
PALETTES_EVAL = (
    ((240, 230, 200), (90, 40, 20)),
    ((20, 40, 90), (245, 220, 120)),
    ((200, 215, 200), (20, 50, 30)),
    ((250, 250, 250), (120, 20, 20)),
)


@dataclass(frozen=True)
class ClockStyle:
    shape: str = "round"  # round | square | octagon
    face: tuple[int, int, int] = (245, 245, 240)
    ink: tuple[int, int, int] = (20, 20, 20)
    rim: tuple[int, int, int] = (40, 40, 40)
    rim_width: float = 0.06  # of the radius
    double_rim: bool = False
    markers: str = "arabic"  # arabic | roman | bars | dots | ticks | none
    font: int = cv2.FONT_HERSHEY_SIMPLEX
    minute_ticks: bool = True
    hands: str = "line"  # line | taper | arrow | leaf | lollipop | baton | outline
    hand_color: tuple[int, int, int] = (10, 10, 10)
    hour_len: float = 0.5  # of the radius
    minute_len: float = 0.78
    hand_width: float = 0.045  # of the radius
    second_hand: bool = False
    second_color: tuple[int, int, int] = (200, 30, 30)
    strap: bool = False  # a wrist watch: a strap above and below the case
    show_hands: bool = True  # False: a dial whose hands are hidden (unreadable)


SPLITS = ("train", "eval", "heldout")


def random_style(rng: np.random.Generator, split: str = "train") -> ClockStyle:
    """A random style from the ``split`` family.

    - "train": training typefaces and palettes, round and square dials, line and tapered hands;
    - "eval": the detector's evaluation set (clockwork.training.evalset): other typefaces and palettes, any dial and
    hands;
    - "heldout": the time reader's test set: eval typefaces and palettes, octagonal or double-rimmed round
      dials, arrow hands, Roman or Arabic numerals; no typeface, palette, hand shape or octagon of it
      is ever used in training.
    """
    if split not in SPLITS:
        raise ValueError(f"Invalid split ({split!r}). Supported values are {', '.join(SPLITS)}.")
    if split == "heldout":
        base = random_style(rng, "eval")
        return replace(
            base,
            shape=str(rng.choice(["round", "octagon"])),
            double_rim=True,
            hands="arrow",
            markers=str(rng.choice(["roman", "arabic"])),
            strap=False,
        )
    palettes = PALETTES_TRAIN if split == "train" else PALETTES_EVAL
    fonts = HERSHEY_TRAIN if split == "train" else HERSHEY_EVAL
    face, ink = palettes[rng.integers(len(palettes))]
    jitter = rng.integers(-12, 13, size=3)
    face = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(face, jitter, strict=True))
    rim = ink if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(0, 256, size=3))
    style = ClockStyle(
        shape=str(rng.choice(["round", "round", "round", "square", "octagon"])),
        face=face,
        ink=ink,
        rim=rim,
        rim_width=float(rng.uniform(0.02, 0.12)),
        double_rim=bool(rng.random() < 0.3),
        markers=str(rng.choice(["arabic", "arabic", "roman", "bars", "dots", "ticks", "none"])),
        font=int(fonts[rng.integers(len(fonts))]),
        minute_ticks=bool(rng.random() < 0.6),
        hands=str(rng.choice(["line", "taper", "arrow"])),
        hand_color=ink if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(0, 256, size=3)),
        hour_len=float(rng.uniform(0.4, 0.58)),
        minute_len=float(rng.uniform(0.7, 0.9)),
        hand_width=float(rng.uniform(0.025, 0.07)),
        second_hand=bool(rng.random() < 0.4),
        second_color=tuple(int(v) for v in rng.integers(0, 256, size=3)) if rng.random() < 0.3 else (200, 30, 30),
        strap=bool(rng.random() < 0.12),
    )
    if split == "train":  # arrow hands, octagons and the eval palettes are held out of training
        style = replace(
            style, shape="square" if style.shape == "octagon" else style.shape, hands=str(rng.choice(HANDS_TRAIN))
        )
        if rng.random() < 0.5:
            face, ink = _random_palette(rng)
            style = replace(
                style,
                face=face,
                ink=ink,
                rim=ink if rng.random() < 0.5 else style.rim,
                hand_color=ink if rng.random() < 0.7 else style.hand_color,
            )
    return style


HANDS_TRAIN = ("line", "taper", "leaf", "lollipop", "baton", "outline")


def _random_palette(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A face and ink of random colours that contrast (luminance apart by 90 or more) and are not near an eval
    palette."""
    lum = lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # noqa: E731
    while True:
        face, ink = (tuple(int(v) for v in rng.integers(0, 256, size=3)) for _ in range(2))
        if abs(lum(face) - lum(ink)) < 90:
            continue
        if all(max(abs(a - b) for a, b in zip(face + ink, f + i, strict=True)) > 60 for f, i in PALETTES_EVAL):
            return face, ink


def hand_angles(hour: int, minute: int, second: float | None = None) -> tuple[float, float, float | None]:
    """Clockwise angles from 12 o'clock in degrees: hour, minute, second."""
    s = second or 0.0
    return (hour % 12) * 30 + minute * 0.5 + s / 120, minute * 6 + s * 0.1, None if second is None else second * 6


def _polygon(shape: str, c: float, r: float) -> np.ndarray:
    if shape == "square":
        return np.array([[c - r, c - r], [c + r, c - r], [c + r, c + r], [c - r, c + r]])
    if shape == "octagon":
        return np.array(
            [
                [c + r * math.cos(math.radians(22.5 + 45 * i)), c + r * math.sin(math.radians(22.5 + 45 * i))]
                for i in range(8)
            ]
        )
    return np.array(
        [[c + r * math.cos(2 * math.pi * i / 96), c + r * math.sin(2 * math.pi * i / 96)] for i in range(96)]
    )


def _hand(img, c, angle_deg, length, width, style: str, color) -> None:
    a = math.radians(angle_deg)
    ux, uy = math.sin(a), -math.cos(a)
    px, py = -uy, ux
    tip = (c + ux * length, c + uy * length)
    tail = (c - ux * length * 0.15, c - uy * length * 0.15)
    col = (*color, 255)
    if style == "line":
        cv2.line(img, _pt(tail), _pt(tip), col, max(1, int(width)), cv2.LINE_AA)
        return
    if style in ("taper", "outline"):
        pts = [
            (tail[0] + px * width * 0.6, tail[1] + py * width * 0.6),
            (tip[0], tip[1]),
            (tail[0] - px * width * 0.6, tail[1] - py * width * 0.6),
        ]
        if style == "outline":  # a skeleton hand: the tapered shape drawn as an outline
            cv2.polylines(
                img, [np.array([_pt(p) for p in pts], np.int32)], True, col, max(1, int(width * 0.3)), cv2.LINE_AA
            )
            return
    elif style == "leaf":  # a lozenge, widest at 40% of its length
        mid = (c + ux * length * 0.4, c + uy * length * 0.4)
        pts = [tail, (mid[0] + px * width, mid[1] + py * width), tip, (mid[0] - px * width, mid[1] - py * width)]
    elif style == "lollipop":  # a thin shaft with a disc near the tip
        cv2.line(img, _pt(tail), _pt(tip), col, max(1, int(width * 0.4)), cv2.LINE_AA)
        cv2.circle(
            img, _pt((c + ux * length * 0.8, c + uy * length * 0.8)), max(2, int(width * 1.1)), col, -1, cv2.LINE_AA
        )
        return
    elif style == "baton":  # a bar with a round counterweight behind the centre
        back = (c - ux * length * 0.25, c - uy * length * 0.25)
        cv2.line(img, _pt(back), _pt(tip), col, max(1, int(width * 1.2)), cv2.LINE_AA)
        cv2.circle(img, _pt(back), max(2, int(width * 1.4)), col, -1, cv2.LINE_AA)
        return
    else:  # arrow: a shaft and a head
        cv2.line(
            img,
            _pt(tail),
            _pt((c + ux * length * 0.75, c + uy * length * 0.75)),
            col,
            max(1, int(width * 0.6)),
            cv2.LINE_AA,
        )
        base = (c + ux * length * 0.72, c + uy * length * 0.72)
        pts = [
            (base[0] + px * width * 1.3, base[1] + py * width * 1.3),
            tip,
            (base[0] - px * width * 1.3, base[1] - py * width * 1.3),
        ]
    cv2.fillPoly(img, [np.array([_pt(p) for p in pts], np.int32)], col, cv2.LINE_AA)


def _pt(p) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def draw_clock_face(
    style: ClockStyle, hour: int, minute: int, second: float | None = None, size: int = 256
) -> np.ndarray:
    """The clock as RGBA uint8 (``size`` x ``size``), transparent outside the case (and strap)."""
    ss = 2  # supersampling
    d = size * ss
    img = np.zeros((d, d, 4), np.uint8)
    c = d / 2
    r = d * (0.40 if style.strap else 0.47)
    if style.strap:
        w = r * 0.9
        strap = (*[int(v * 0.6) for v in style.rim], 255)
        cv2.rectangle(img, _pt((c - w / 2, 0)), _pt((c + w / 2, d)), strap, -1)
    case = (*style.rim, 255)
    cv2.fillPoly(img, [_polygon(style.shape, c, r).astype(np.int32)], case, cv2.LINE_AA)
    inner = r * (1 - style.rim_width)
    cv2.fillPoly(img, [_polygon(style.shape, c, inner).astype(np.int32)], (*style.face, 255), cv2.LINE_AA)
    ink = (*style.ink, 255)
    if style.double_rim:
        cv2.polylines(
            img,
            [_polygon(style.shape, c, inner * 0.93).astype(np.int32)],
            True,
            ink,
            max(1, int(r * 0.012)),
            cv2.LINE_AA,
        )
    ring = inner * 0.9
    for i in range(60):
        a = math.radians(i * 6)
        hour_mark = i % 5 == 0
        if not hour_mark and not style.minute_ticks:
            continue
        if hour_mark and style.markers in ("arabic", "roman", "none") and not style.minute_ticks:
            continue
        length = 0.1 if hour_mark else 0.04
        if style.markers == "bars" and hour_mark:
            length = 0.2
        width = max(1, int(r * (0.035 if hour_mark else 0.012) * (1.8 if style.markers == "bars" and hour_mark else 1)))
        p1 = (c + math.sin(a) * ring, c - math.cos(a) * ring)
        p2 = (c + math.sin(a) * ring * (1 - length), c - math.cos(a) * ring * (1 - length))
        if style.markers == "dots" and hour_mark:
            cv2.circle(
                img, _pt(((p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2)), max(2, int(r * 0.035)), ink, -1, cv2.LINE_AA
            )
        else:
            cv2.line(img, _pt(p1), _pt(p2), ink, width, cv2.LINE_AA)
    if style.markers in ("arabic", "roman"):
        scale = r / 260 * (0.8 if style.markers == "roman" else 1.0)
        thick = max(1, int(r / 110))
        for n in range(12):
            text = ROMAN[n] if style.markers == "roman" else str(n or 12)
            a = math.radians(n * 30)
            tx, ty = c + math.sin(a) * ring * 0.76, c - math.cos(a) * ring * 0.76
            (tw, th), _ = cv2.getTextSize(text, style.font, scale, thick)
            cv2.putText(img, text, _pt((tx - tw / 2, ty + th / 2)), style.font, scale, ink, thick, cv2.LINE_AA)
    ha, ma, sa = hand_angles(hour, minute, second)
    width = r * style.hand_width
    if style.show_hands:
        _hand(img, c, ha, ring * style.hour_len, width * 1.3, style.hands, style.hand_color)
        _hand(img, c, ma, ring * style.minute_len, width, style.hands, style.hand_color)
        if style.second_hand and sa is not None:
            _hand(img, c, sa, ring * 0.88, max(1.0, width * 0.3), "line", style.second_color)
        cv2.circle(img, _pt((c, c)), max(2, int(width * 0.9)), (*style.hand_color, 255), -1, cv2.LINE_AA)
    # premultiply so the area downscale does not bleed black into anti-aliased edges
    rgb = img[..., :3].astype(np.float32) * (img[..., 3:4] / 255.0)
    small_rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(img[..., 3].astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    out_rgb = np.where(alpha[..., None] > 0, small_rgb / np.maximum(alpha[..., None] / 255.0, 1e-6), 0)
    return np.dstack([np.clip(out_rgb, 0, 255), alpha]).astype(np.uint8)


def composite(background: np.ndarray, rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """Alpha-blend ``rgba`` onto a copy of RGB ``background`` with its top-left at (x, y); parts outside are cut."""
    out = background.copy()
    h, w = rgba.shape[:2]
    bh, bw = out.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, bw), min(y + h, bh)
    if x0 >= x1 or y0 >= y1:
        return out
    patch = rgba[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    a = patch[..., 3:4] / 255.0
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (patch[..., :3] * a + region * (1 - a)).astype(np.uint8)
    return out
