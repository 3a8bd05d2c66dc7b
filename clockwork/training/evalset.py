"""The project's own evaluation set for clock detection: clips at four scales, plus distractors.

    items = write_evalset("var/evalset", per_scale=12, seed=0)

Each clip is 1280x720, 10 frames/s, 2 s, H.264, with one clock at one of four scales:

- ``fill``: an extreme close-up: the dial is 1.1-1.4x the frame height, cropped by the frame;
- ``close``: the dial about fills the frame height (0.8-1.0x);
- ``medium``: about 320 px;
- ``small``: about 140 px (120-160).

Clocks come from ``clockwork.training.clockface`` in the "eval" style family (typefaces and palettes that the
time reader's training never uses; the detector is COCO's and saw none of them) with perspective,
blur, grain and a lighting gradient, on scikit-image's photographs and textures. The real motion-
blurred clock photograph that scikit-image ships (``skimage.data.clock``) is added at each scale as a
separate ``photo`` group. Distractor clips hold round things that are not clocks (coins, the moon, a
colour wheel, drawn plates, wheels and fans) at the same scales. ``manifest.json`` lists every clip with
its ground-truth box per frame.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from clockwork.training.clockface import composite, draw_clock_face, random_style
from clockwork.video import ffmpeg

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 10, 2.0
SCALES = {"fill": (1.1, 1.4), "close": (0.8, 1.0), "medium": (300, 340), "small": (120, 160)}
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "brick", "gravel", "grass", "camera", "immunohistochemistry")


@dataclass
class EvalItem:
    name: str
    kind: str  # clock | photo | distractor
    scale: str
    boxes: list[list[float]]  # per frame [x, y, w, h] of the clock clipped to the frame; [] for distractors
    time: str | None = None  # "HH:MM" shown, for clocks drawn by us


def _background(rng: np.random.Generator) -> np.ndarray:
    import skimage.data

    name = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    img = img[..., :3]
    h, w = img.shape[:2]
    scale = max(WIDTH / w, HEIGHT / h) * rng.uniform(1.0, 1.4)
    img = cv2.resize(img, (int(w * scale) + 1, int(h * scale) + 1), interpolation=cv2.INTER_LINEAR)
    y, x = rng.integers(0, img.shape[0] - HEIGHT + 1), rng.integers(0, img.shape[1] - WIDTH + 1)
    return np.ascontiguousarray(img[y : y + HEIGHT, x : x + WIDTH])


def _size(scale: str, rng: np.random.Generator) -> int:
    lo, hi = SCALES[scale]
    return int(rng.uniform(lo, hi) * HEIGHT) if scale in ("fill", "close") else int(rng.uniform(lo, hi))


def _perspective(rgba: np.ndarray, rng: np.random.Generator, strength: float = 0.12) -> np.ndarray:
    """A random mild perspective warp (a dial seen a little from the side)."""
    s = rgba.shape[0]
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    dst = src + rng.uniform(-strength, strength, size=(4, 2)).astype(np.float32) * s
    dst -= dst.min(axis=0)
    out = int(math.ceil(dst.max()))
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(rgba, m, (out, out), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))


def _finish(frame: np.ndarray, rng: np.random.Generator, blur: float, light: np.ndarray) -> np.ndarray:
    out = frame.astype(np.float32) * light
    if blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out += rng.normal(0, 4.0, size=out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _lighting(rng: np.random.Generator) -> np.ndarray:
    gx = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.15), WIDTH, dtype=np.float32)
    gy = np.linspace(rng.uniform(0.8, 1.05), rng.uniform(0.85, 1.1), HEIGHT, dtype=np.float32)
    return (gy[:, None] * gx[None, :])[..., None]


def _alpha_box(rgba: np.ndarray, x: int, y: int) -> list[float]:
    ys, xs = np.nonzero(rgba[..., 3] > 128)
    x0, y0 = max(0, x + xs.min()), max(0, y + ys.min())
    x1, y1 = min(WIDTH, x + xs.max() + 1), min(HEIGHT, y + ys.max() + 1)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _placement(size: int, scale: str, rng: np.random.Generator) -> tuple[int, int]:
    if scale in ("fill", "close"):
        return int((WIDTH - size) / 2 + rng.uniform(-0.15, 0.15) * WIDTH), int(
            (HEIGHT - size) / 2 + rng.uniform(-0.1, 0.1) * size
        )
    return int(rng.uniform(0.02, 0.98) * (WIDTH - size)), int(rng.uniform(0.02, 0.98) * (HEIGHT - size))


def _photo_clock(size: int) -> np.ndarray:
    """scikit-image's photograph of a (motion-blurred) wall clock, cropped around the dial, as opaque RGBA."""
    import skimage.data

    img = skimage.data.clock()[40:260, 90:330]
    img = cv2.resize(
        np.dstack([img] * 3), (size, int(size * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_AREA
    )
    return np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])


def _distractor(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A round thing that is not a clock, as RGBA."""
    import skimage.data

    s = size
    img = np.zeros((s, s, 4), np.uint8)
    c, r = s // 2, int(s * 0.47)
    if kind in ("coins", "moon", "colorwheel"):
        src = getattr(skimage.data, kind)()
        if src.ndim == 2:
            src = np.dstack([src] * 3)
        if kind == "coins":
            y, x = rng.integers(0, src.shape[0] - 80), rng.integers(0, src.shape[1] - 80)
            src = src[y : y + 80, x : x + 80]
        src = cv2.resize(np.ascontiguousarray(src[..., :3]), (s, s), interpolation=cv2.INTER_LINEAR)
        mask = np.zeros((s, s), np.uint8)
        cv2.circle(mask, (c, c), r, 255, -1, cv2.LINE_AA)
        return np.dstack([src, mask])
    color = tuple(int(v) for v in rng.integers(60, 250, size=3))
    ink = tuple(int(v) for v in rng.integers(0, 120, size=3))
    cv2.circle(img, (c, c), r, (*color, 255), -1, cv2.LINE_AA)
    if kind == "plate":
        for k in (0.92, 0.7):
            cv2.circle(img, (c, c), int(r * k), (*ink, 255), max(1, s // 80), cv2.LINE_AA)
    elif kind == "wheel":
        cv2.circle(img, (c, c), int(r * 0.8), (*ink, 255), max(2, s // 25), cv2.LINE_AA)
        for i in range(int(rng.integers(5, 9))):
            a = 2 * math.pi * i / 8 + rng.uniform(0, 0.3)
            cv2.line(
                img,
                (c, c),
                (int(c + math.cos(a) * r * 0.8), int(c + math.sin(a) * r * 0.8)),
                (*ink, 255),
                max(2, s // 40),
                cv2.LINE_AA,
            )
        cv2.circle(img, (c, c), int(r * 0.15), (*ink, 255), -1, cv2.LINE_AA)
    else:  # fan
        for i in range(3):
            a = 2 * math.pi * i / 3 + rng.uniform(0, 1)
            pts = [(c, c)] + [
                (int(c + math.cos(a + t) * r * 0.85), int(c + math.sin(a + t) * r * 0.85))
                for t in np.linspace(0, 0.9, 8)
            ]
            cv2.fillPoly(img, [np.array(pts, np.int32)], (*ink, 255), cv2.LINE_AA)
        cv2.circle(img, (c, c), int(r * 0.18), (*color, 255), -1, cv2.LINE_AA)
    return img


DISTRACTORS = ("coins", "moon", "colorwheel", "plate", "wheel", "fan")


def _write_clip(frames: list[np.ndarray], out: Path) -> None:
    cmd = [
        ffmpeg.ffmpeg_bin(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{WIDTH}x{HEIGHT}",
        "-r",
        str(FPS),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        str(out),
    ]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


def _render_item(kind: str, scale: str, rng: np.random.Generator, out: Path) -> EvalItem:
    background = _background(rng)
    light = _lighting(rng)
    blur = float(rng.uniform(0.0, 1.2))
    size = _size(scale, rng)
    time = None
    if kind == "clock":
        hour, minute = int(rng.integers(12)), int(rng.integers(60))
        time = f"{hour or 12:02d}:{minute:02d}"
        thing = _perspective(draw_clock_face(random_style(rng, "eval"), hour, minute, None, size), rng)
    elif kind == "photo":
        thing = _photo_clock(size)
    else:
        thing = _perspective(_distractor(DISTRACTORS[rng.integers(len(DISTRACTORS))], size, rng), rng, 0.08)
    x, y = _placement(max(thing.shape[:2]), scale, rng)
    drift = rng.uniform(-3, 3, size=2)
    frames, boxes = [], []
    for i in range(int(FPS * SECONDS)):
        fx, fy = int(x + drift[0] * i), int(y + drift[1] * i)
        frames.append(_finish(composite(background, thing, fx, fy), rng, blur, light))
        boxes.append(_alpha_box(thing, fx, fy) if kind != "distractor" else [])
    _write_clip(frames, out)
    return EvalItem(out.name, kind, scale, boxes, time)


def write_evalset(
    directory: str | Path, *, per_scale: int = 12, distractors_per_scale: int = 3, seed: int = 0
) -> list[EvalItem]:
    """Render the evaluation set into ``directory`` (skipping it when its manifest matches) and return its items."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = {"per_scale": per_scale, "distractors_per_scale": distractors_per_scale, "seed": seed, "version": 1}
    manifest = directory / "manifest.json"
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        if doc.get("key") == key:
            return [EvalItem(**item) for item in doc["items"]]
    rng = np.random.default_rng(seed)
    items = []
    for scale in SCALES:
        for i in range(per_scale):
            items.append(_render_item("clock", scale, rng, directory / f"clock-{scale}-{i:02d}.mp4"))
        items.append(_render_item("photo", scale, rng, directory / f"photo-{scale}.mp4"))
        for i in range(distractors_per_scale):
            items.append(_render_item("distractor", scale, rng, directory / f"distractor-{scale}-{i:02d}.mp4"))
    manifest.write_text(json.dumps({"key": key, "items": [asdict(i) for i in items]}) + "\n")
    return items


def box_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def examined_frames(result) -> list[int]:
    """The frame numbers a result examined, from its mode (``frame_data`` holds only frames with a box):
    every frame, a ``sample_fps`` grid, or a scan's coarse grid plus its refined windows. Assumes a constant
    frame rate, as the evaluation clips have."""
    from clockwork.video.decode import SampleGrid

    times = [i / result.fps for i in range(result.frames_total)]
    if result.scan:
        grid = SampleGrid(result.scan["coarse_fps"])
        keep = {i for i, t in enumerate(times) if grid.keep(t)}
        for a, b in result.scan["refined"]:
            keep |= {i for i, t in enumerate(times) if a - 1e-6 <= t < b - 1e-6}
        return sorted(keep)
    grid = SampleGrid(result.sample_fps or None)
    return [i for i, t in enumerate(times) if grid.keep(t)]


def score_clip(item: EvalItem, result, *, min_iou: float = 0.3) -> dict:
    """How one clip went: for a clock, the share of processed frames whose best box matches the truth;
    for a distractor, how many clock segments (false positives) it produced.

    ``found`` asks for a segment and a share of at least one half. ``found_time`` asks the same of
    ``time_share``: each frame of the clip counts as the examined frame nearest to it in time did. The two
    agree when the examined frames are evenly spaced (every frame, or sampled); a scan examines frames
    unevenly, most of them around the places where the detection changes, so its plain share
    undercounts the time a clock was seen, and ``found_time`` is the fair comparison across modes."""
    if item.kind == "distractor":
        return {"false_segments": len(result.segments)}
    by_frame = {f.frame_no: f for f in result.frame_data}
    processed = max(result.frames_processed, 1)
    examined = np.array(sorted(set(examined_frames(result)) | set(by_frame)), int)
    hits, ious, matched = 0, [], {}
    for frame_no, truth in enumerate(item.boxes):
        f = by_frame.get(frame_no)
        if f is None or not truth:
            continue
        best = max((box_iou([d.x, d.y, d.w, d.h], truth) for d in f.detections), default=0.0)
        matched[frame_no] = best >= min_iou
        if best >= min_iou:
            hits += 1
            ious.append(best)
    share = hits / processed
    with_truth = [i for i, truth in enumerate(item.boxes) if truth]
    if examined.size and with_truth:
        nearest = examined[np.abs(examined[None, :] - np.array(with_truth)[:, None]).argmin(axis=1)]
        time_share = float(np.mean([matched.get(int(n), False) for n in nearest]))
    else:
        time_share = 0.0
    return {
        "found": share >= 0.5 and bool(result.segments),
        "share": share,
        "iou": float(np.mean(ious)) if ious else 0.0,
        "found_time": time_share >= 0.5 and bool(result.segments),
        "time_share": time_share,
    }
