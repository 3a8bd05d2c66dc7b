"""Fine-tune YOLOv3-tiny's detection heads on rendered clocks.

    python -m clockwork.training.train_detector --out var/det --minutes 8                             # a run (GPU
    machine)
    python -m clockwork.training.train_detector --out var/det --resume var/det/last.pt --minutes 8    # go on
    python -m clockwork.training.train_detector --export var/det/last.pt --to clock_head.pt           # the small head
    file
    Detector(head="clock_head.pt")                                                            # COCO's model, fine-tuned
    heads

The COCO backbone (layers 0-12) stays frozen: the model keeps COCO's features, and what trains is every
layer from ``TRAIN_FROM`` on (both YOLO heads, 2.6 M parameters, a 5 MB fp16 file). The COCO model itself
is untouched and stays the default until a head beats it on ``bench.recall`` with no new false positives.

Each training image is one network input, drawn by ``render_scene``: a "frame" of a random aspect ratio
placed in the grey square the way the detector's views place one (the full view, a tile, or the zoomed-out
view at half size); on it a background, half the time a photograph that the evaluation set never uses
(``PHOTOS``), else procedural (gradients, shapes, lines, text, noise), with 0-3 clocks in the "train" style
family of ``clockwork.training.clockface`` at 5% to 150% of the frame height (an extreme close-up is cropped by the
frame), warped in perspective and turned, and 0-5 round things that are not clocks (plates, wheels, fans,
moons, signs, balls, buttons, round windows on another scene, targets, gears, discs and embossed coins cut
from the same photographs); then lighting, blur or motion blur, JPEG and grain. Targets are the visible
part of each clock, class "clock" (COCO's 74).

The loss is YOLOv3's: each box to the best of the six anchors by shape; BCE on the centre offset, squared
error on the log size (weighted 2 - w*h), BCE on objectness (predictions overlapping a box by IoU > 0.5 not
punished) and on the classes (clock 1, the 79 others 0). Rendering runs in DataLoader workers; the step runs
in bf16 on the GPU. Each command stops after --minutes with ``last.pt`` and ``opt.pt`` in --out.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from clockwork.detect import model_store
from clockwork.detect.boxes import LETTERBOX_FILL, cxcywh_to_xywh, iou_matrix, nms
from clockwork.detect.darknet import Darknet, YoloHead
from clockwork.settings import CLOCK_LABEL
from clockwork.training import common as training
from clockwork.training.clockface import composite, draw_clock_face, random_style
from clockwork.training.train_reader import _warp

INPUT = 416
TRAIN_FROM = 13  # layers 13 on: both heads' convolutions; 0-12 (COCO's backbone) stay frozen
CLOCK = 74  # "clock" in coco.names
ASPECTS = ((16, 9), (16, 9), (16, 9), (4, 3), (2.39, 1), (1, 1), (9, 16))
NEGATIVES = (
    "plate",
    "wheel",
    "wheel",
    "fan",
    "moon",
    "moon",
    "sign",
    "ball",
    "button",
    "disc",
    "target",
    "gear",
    "photo",
    "photo",
    "relief",
)
# scikit-image's photographs that the evaluation set (clockwork.training.evalset) never shows: textures for backgrounds
# and
# for round things that are not clocks ("photo": a disc cut from one; "relief": an embossed one, a coin or a medal).
PHOTOS = (
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
    "cell",
    "horse",
    "page",
    "text",
    "shepp_logan_phantom",
    "microaneurysms",
)
_photo_cache: dict[str, tuple[np.ndarray, bool]] = {}  # name -> (RGB uint8, whether the photograph is grey)


# -- rendering ------------------------------------------------------------------------------------


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random crop of one of ``PHOTOS`` at a random zoom, flipped at times, a grey one tinted, ``h`` x ``w`` x 3."""
    name = PHOTOS[rng.integers(len(PHOTOS))]
    if name not in _photo_cache:
        import skimage.data

        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
        img = img.astype(np.float32)
        img = (img - img.min()) / max(float(np.ptp(img)), 1e-6) * 255  # horse and the phantom are 0/1 or floats
        grey = img.ndim == 2
        _photo_cache[name] = (
            np.ascontiguousarray(np.dstack([img] * 3) if grey else img[..., :3]).astype(np.uint8),
            grey,
        )
    img, grey = _photo_cache[name]
    ih, iw = img.shape[:2]
    zoom = max(w / iw, h / ih) * math.exp(rng.uniform(0, math.log(4)))
    cw, ch = min(iw, max(2, int(w / zoom))), min(ih, max(2, int(h / zoom)))
    x, y = int(rng.integers(0, iw - cw + 1)), int(rng.integers(0, ih - ch + 1))
    out = cv2.resize(img[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if grey or rng.random() < 0.2:
        out = (out.astype(np.float32) * rng.uniform(0.4, 1.2, size=3)).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Half the time a photograph (``_photo``), else procedural: a gradient, then shapes, lines, text and
    blurred noise at a random scale."""
    if rng.random() < 0.5:
        return _photo(rng, w, h)
    a, b = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :] * math.cos(rng.uniform(0, math.pi)) + np.linspace(
        0, 1, h, dtype=np.float32
    )[:, None] * math.sin(rng.uniform(0, math.pi))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = (a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(0, 12))):
        kind = rng.integers(4)
        p1 = (int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h)))
        if kind == 0:
            p2 = (p1[0] + int(rng.integers(8, w // 2 + 9)), p1[1] + int(rng.integers(8, h // 2 + 9)))
            cv2.rectangle(img, p1, p2, _color(rng), -1 if rng.random() < 0.7 else int(rng.integers(1, 6)))
        elif kind == 1:
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, _color(rng), int(rng.integers(1, 8)), cv2.LINE_AA)
        elif kind == 2:
            pts = rng.integers(0, max(w, h), size=(int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], _color(rng), cv2.LINE_AA)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(48, 91, size=int(rng.integers(2, 10))))
            cv2.putText(
                img,
                text,
                p1,
                int(rng.integers(0, 8)),
                float(rng.uniform(0.4, 3)),
                _color(rng),
                int(rng.integers(1, 4)),
                cv2.LINE_AA,
            )
    if rng.random() < 0.7:
        s = int(rng.integers(2, 40))
        noise = cv2.resize(
            rng.normal(0, 1, (max(2, h // s), max(2, w // s), 3)).astype(np.float32),
            (w, h),
            interpolation=cv2.INTER_CUBIC,
        )
        img = np.clip(img + noise * rng.uniform(5, 50), 0, 255).astype(np.uint8)
    return img


def _negative(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A round thing that is not a clock, RGBA ``size`` x ``size``."""
    img = np.zeros((size, size, 4), np.uint8)
    c, r = (size // 2, size // 2), size // 2 - 1
    rgb = lambda: (*_color(rng), 255)  # noqa: E731
    cv2.circle(img, c, r, rgb(), -1, cv2.LINE_AA)
    if kind == "plate":
        for f in sorted(rng.uniform(0.5, 0.95, size=int(rng.integers(1, 4))), reverse=True):
            cv2.circle(img, c, int(r * f), rgb(), max(1, size // 60), cv2.LINE_AA)
    elif kind == "wheel":
        cv2.circle(img, c, int(r * 0.8), rgb(), -1, cv2.LINE_AA)
        spoke = rgb()
        for k in range(int(rng.integers(4, 13))):
            a = 2 * math.pi * k / 8 + rng.uniform(0, 0.2)
            cv2.line(
                img,
                c,
                (int(c[0] + r * 0.8 * math.cos(a)), int(c[1] + r * 0.8 * math.sin(a))),
                spoke,
                max(1, size // 40),
                cv2.LINE_AA,
            )
        cv2.circle(img, c, max(2, r // 6), spoke, -1, cv2.LINE_AA)
    elif kind == "fan":
        blade, n = rgb(), int(rng.integers(3, 6))
        off = rng.uniform(0, 2 * math.pi)
        for k in range(n):
            a = off + 2 * math.pi * k / n
            centre = (int(c[0] + r * 0.45 * math.cos(a)), int(c[1] + r * 0.45 * math.sin(a)))
            cv2.ellipse(
                img, centre, (int(r * 0.45), max(2, int(r * 0.18))), math.degrees(a), 0, 360, blade, -1, cv2.LINE_AA
            )
        for f in (0.33, 0.66, 0.98):
            cv2.circle(img, c, int(r * f), rgb(), max(1, size // 100), cv2.LINE_AA)
    elif kind == "moon":  # a grey disc with a faint texture (half the time a photograph's) and a few craters
        grey = int(rng.integers(110, 240))
        if rng.random() < 0.5:
            tex = cv2.cvtColor(_photo(rng, size, size), cv2.COLOR_RGB2GRAY).astype(np.float32)
            tex = (tex - tex.mean()) * rng.uniform(0.1, 0.5) + grey
            img[..., :3] = np.clip(tex, 0, 255).astype(np.uint8)[..., None]
        else:
            cv2.circle(img, c, r, (grey, grey, grey - int(rng.integers(0, 30)), 255), -1, cv2.LINE_AA)
        for _ in range(int(rng.integers(2, 16))):
            d = int(rng.integers(1, max(3, r // int(rng.choice([6, 12, 24])))))
            g = int(np.clip(grey + rng.choice([-1, 1]) * rng.integers(20, 90), 0, 255))
            p = (int(c[0] + rng.uniform(-0.8, 0.8) * r), int(c[1] + rng.uniform(-0.8, 0.8) * r))
            cv2.circle(img, p, d, (g, g, g, 255), -1, cv2.LINE_AA)
    elif kind == "sign":
        cv2.circle(img, c, int(r * 0.8), rgb(), -1, cv2.LINE_AA)
        if rng.random() < 0.5:
            cv2.rectangle(
                img, (int(c[0] - r * 0.6), int(c[1] - r * 0.15)), (int(c[0] + r * 0.6), int(c[1] + r * 0.15)), rgb(), -1
            )
        else:
            cv2.putText(
                img,
                str(int(rng.integers(10, 130))),
                (int(c[0] - r * 0.55), int(c[1] + r * 0.25)),
                cv2.FONT_HERSHEY_SIMPLEX,
                max(0.3, size / 110),
                rgb(),
                max(1, size // 30),
                cv2.LINE_AA,
            )
    elif kind == "ball":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        light = np.clip(1.2 - np.hypot(xx - size * 0.35, yy - size * 0.35) / size * 1.6, 0.2, 1.2)
        img[..., :3] = np.clip(img[..., :3] * light[..., None], 0, 255).astype(np.uint8)
    elif kind == "disc":  # a round window on another scene: a porthole, a mirror, a round picture
        img[..., :3] = _background(rng, size, size)
    elif kind == "photo":  # a photograph on a round thing: a plate, a badge, a lens, a planet; a rim at times
        img[..., :3] = _photo(rng, size, size)
        if rng.random() < 0.5:
            cv2.circle(img, c, r, rgb(), max(1, size // int(rng.integers(15, 60))), cv2.LINE_AA)
    elif kind == "relief":  # a coin or a medal: a photograph embossed, in one metal tint
        grey = cv2.cvtColor(_photo(rng, size, size), cv2.COLOR_RGB2GRAY).astype(np.float32)
        bump = cv2.filter2D(grey, -1, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32))
        relief = np.clip(128 + bump * rng.uniform(0.3, 1.0), 0, 255)[..., None] / 255
        metal = (
            np.array(_color(rng), np.float32) * 0.4
            + np.array((200, 170, 110) if rng.random() < 0.5 else (190, 190, 195), np.float32) * 0.6
        )
        img[..., :3] = np.clip(relief * metal * 1.6, 0, 255).astype(np.uint8)
        cv2.circle(img, c, r, (*(int(v) for v in metal), 255), max(2, size // 20), cv2.LINE_AA)
    elif kind == "target":
        for f in np.linspace(1.0, 0.1, int(rng.integers(3, 9))):
            cv2.circle(img, c, max(1, int(r * f)), rgb(), -1, cv2.LINE_AA)
    elif kind == "gear":
        img[...] = 0
        teeth = int(rng.integers(8, 24))
        angles = np.linspace(0, 2 * math.pi, teeth * 4, endpoint=False)
        radius = np.where((np.arange(teeth * 4) // 2) % 2 == 0, r, r * 0.8)
        pts = np.stack([c[0] + radius * np.cos(angles), c[1] + radius * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], rgb(), cv2.LINE_AA)
        cv2.circle(img, c, max(2, r // 4), (0, 0, 0, 0), -1)
    else:  # button
        for k in range(4):
            a = math.pi / 4 + k * math.pi / 2
            cv2.circle(
                img,
                (int(c[0] + r * 0.25 * math.cos(a)), int(c[1] + r * 0.25 * math.sin(a))),
                max(1, r // 8),
                (0, 0, 0, 255),
                -1,
            )
    return img


def _place(owner: np.ndarray, alpha: np.ndarray, x: int, y: int, ident: int) -> None:
    """Mark the pixels of the frame that the thing ``ident`` (its alpha at (x, y)) now covers."""
    h, w = owner.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + alpha.shape[1], w), min(y + alpha.shape[0], h)
    if x0 < x1 and y0 < y1:
        region = owner[y0:y1, x0:x1]
        region[alpha[y0 - y : y1 - y, x0 - x : x1 - x] > 64] = ident


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    x = img.astype(np.float32) * rng.uniform(0.5, 1.3) + rng.uniform(-30, 30)
    x *= rng.uniform(0.85, 1.15, size=3)
    if rng.random() < 0.5:  # a light gradient across the frame
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = np.cos(a) * xx / w + np.sin(a) * yy / h
        x *= (1 - rng.uniform(0.2, 0.6) * (g - g.min()) / max(float(np.ptp(g)), 1e-6))[..., None]
    x = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        x = training.motion_blur(x, rng, 3, 12)
    elif rng.random() < 0.4:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.3, 1.5)))
    if rng.random() < 0.6:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        x = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    return np.clip(x + rng.normal(0, rng.uniform(0, 8), x.shape), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One network input (uint8 ``INPUT`` x ``INPUT`` x 3) and its clock boxes (float32 [n, 4], x0 y0 x1 y1 in
    input pixels). ``split`` picks the clock style family (``clockface.random_style``)."""
    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    long_side = INPUT if rng.random() < 0.8 else INPUT // 2  # the zoomed-out view shows the frame at half size
    scale = long_side / max(aw, ah)
    w, h = max(32, int(round(aw * scale))), max(32, int(round(ah * scale)))
    frame = _background(rng, w, h)
    owner = np.full(
        (h, w), -1, np.int16
    )  # which thing each pixel shows: a clock hidden by what is drawn over it is not seen
    things = [("clock", None)] * int(rng.choice([0, 1, 1, 1, 1, 2, 2, 3])) + [
        ("negative", NEGATIVES[rng.integers(len(NEGATIVES))]) for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3, 4, 5])))
    ]
    clocks = {}  # ident -> pixels of the whole dial
    for ident, i in enumerate(rng.permutation(len(things))):
        kind, what = things[i]
        size = int(np.clip(h * math.exp(rng.uniform(math.log(0.05), math.log(1.5))), 8, 3 * INPUT))
        if kind == "clock":
            hour, minute = int(rng.integers(12)), int(rng.integers(60))
            second = float(rng.uniform(0, 60)) if rng.random() < 0.3 else None
            rgba = _warp(draw_clock_face(random_style(rng, split), hour, minute, second, max(size, 24)), rng)
        else:
            rgba = _warp(_negative(what, max(size, 24), rng), rng)
        if size < 24:
            rgba = cv2.resize(
                rgba,
                (max(4, rgba.shape[1] * size // 24), max(4, rgba.shape[0] * size // 24)),
                interpolation=cv2.INTER_AREA,
            )
        s = rgba.shape[0]
        x = int(rng.integers(-s // 3, max(1, w - 2 * s // 3))) if s < w else int(rng.integers(w - s, 1))
        y = int(rng.integers(-s // 3, max(1, h - 2 * s // 3))) if s < h else int(rng.integers(h - s, 1))
        frame = composite(frame, rgba, x, y)
        _place(owner, rgba[..., 3], x, y, ident)
        if kind == "clock":
            clocks[ident] = int((rgba[..., 3] > 64).sum())
    boxes = []
    for ident, whole in clocks.items():
        ys, xs = np.nonzero(owner == ident)
        if not len(xs):
            continue
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        # a dial cut to a sliver or mostly hidden is no clock to find; a big dial cropped by the frame (an insert) still
        # is
        if len(xs) >= 0.4 * whole or len(xs) >= 0.25 * w * h:
            boxes.append(box)
    frame = _finish(frame, rng)
    out = np.full((INPUT, INPUT, 3), LETTERBOX_FILL, np.uint8)
    px, py = (INPUT - w) // 2, (INPUT - h) // 2
    out[py : py + h, px : px + w] = frame
    b = np.array(boxes, np.float32).reshape(-1, 4) + np.array([px, py, px, py], np.float32)
    return out, b


def collate(batch):
    imgs, boxes = zip(*batch, strict=True)
    return torch.from_numpy(np.stack(imgs)), [torch.from_numpy(b) for b in boxes]


# -- the loss -------------------------------------------------------------------------------------


def _xywh(xyxy: torch.Tensor) -> torch.Tensor:
    """Corner boxes (the targets) as top-left/size, the form ``clockwork.detect.boxes`` computes IoU and NMS on."""
    return torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)


def yolo_loss(
    raws: list[torch.Tensor],
    heads: list[YoloHead],
    targets: list[torch.Tensor],
    cls: int = CLOCK,
    ignore_iou: float = 0.5,
) -> tuple[torch.Tensor, dict]:
    """YOLOv3's loss over both heads. ``raws``: each head's logits [B, A, H, W, 5 + C]; ``targets``: per
    image, boxes [n, 4] x0 y0 x1 y1 in input pixels. Returns the loss (summed, over the batch size) and its parts."""
    dev = raws[0].device
    bsz = raws[0].shape[0]
    anchors = torch.cat([h.anchors for h in heads]).to(dev)  # [6, 2], head by head
    per_head = [h.anchors.shape[0] for h in heads]
    parts = {
        "xy": torch.zeros((), device=dev),
        "wh": torch.zeros((), device=dev),
        "obj": torch.zeros((), device=dev),
        "noobj": torch.zeros((), device=dev),
        "cls": torch.zeros((), device=dev),
    }
    # assign each box to its best anchor by shape
    assigned: list[list[tuple]] = [[] for _ in heads]
    for b, boxes in enumerate(targets):
        if not len(boxes):
            continue
        boxes = boxes.to(dev).float()
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
        inter = torch.min(wh[:, None], anchors[None]).prod(-1)
        best = (inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)).argmax(1)
        for k, box, size in zip(best.tolist(), boxes, wh, strict=True):
            hi = 0
            while k >= per_head[hi]:
                k -= per_head[hi]
                hi += 1
            assigned[hi].append((b, k, box, size))
    for hi, (raw, head) in enumerate(zip(raws, heads, strict=True)):
        raw = raw.float()
        _, na, gh, gw, _ = raw.shape
        stride_x, stride_y = INPUT / gw, INPUT / gh
        # decoded predictions, for the ignore mask
        gy, gx = torch.meshgrid(torch.arange(gh, device=dev), torch.arange(gw, device=dev), indexing="ij")
        with torch.no_grad():
            cx = (torch.sigmoid(raw[..., 0]) + gx) * stride_x
            cy = (torch.sigmoid(raw[..., 1]) + gy) * stride_y
            a = head.anchors.to(dev).view(1, na, 1, 1, 2)
            pw, ph = torch.exp(raw[..., 2].clamp(max=8)) * a[..., 0], torch.exp(raw[..., 3].clamp(max=8)) * a[..., 1]
            pred = torch.stack(
                [cx - pw / 2, cy - ph / 2, pw, ph], -1
            )  # top-left/size, as clockwork.detect.boxes takes them
            noobj = torch.ones(raw.shape[:4], dtype=torch.bool, device=dev)
            for b, boxes in enumerate(targets):
                if len(boxes):
                    ious = iou_matrix(pred[b].reshape(-1, 4), _xywh(boxes.to(dev).float())).max(1).values
                    noobj[b] &= (ious <= ignore_iou).view(na, gh, gw)
        obj_t = torch.zeros(raw.shape[:4], device=dev)
        rows = []
        for b, k, box, size in assigned[hi]:
            c = (box[:2] + box[2:]) / 2
            i, j = int(min(c[1] / stride_y, gh - 1)), int(min(c[0] / stride_x, gw - 1))
            rows.append(
                (
                    b,
                    k,
                    i,
                    j,
                    c[0] / stride_x - j,
                    c[1] / stride_y - i,
                    torch.log(size[0] / head.anchors[k, 0].to(dev)),
                    torch.log(size[1] / head.anchors[k, 1].to(dev)),
                    2 - size.prod() / INPUT**2,
                )
            )
            obj_t[b, k, i, j] = 1
            noobj[b, k, i, j] = False
        if rows:
            bi, ki, ii, ji = (torch.tensor([r[n] for r in rows], device=dev) for n in range(4))
            txy = torch.stack([torch.stack([r[4], r[5]]) for r in rows]).float()
            twh = torch.stack([torch.stack([r[6], r[7]]) for r in rows]).float()
            weight = torch.stack([r[8] for r in rows]).float()
            p = raw[bi, ki, ii, ji]
            parts["xy"] = (
                parts["xy"]
                + (F.binary_cross_entropy_with_logits(p[:, :2], txy, reduction="none").sum(1) * weight).sum()
            )
            parts["wh"] = parts["wh"] + (((p[:, 2:4] - twh) ** 2).sum(1) * weight).sum() * 0.5
            parts["obj"] = parts["obj"] + F.binary_cross_entropy_with_logits(
                p[:, 4], torch.ones_like(p[:, 4]), reduction="sum"
            )
            cls_t = torch.zeros_like(p[:, 5:])
            cls_t[:, cls] = 1
            parts["cls"] = parts["cls"] + F.binary_cross_entropy_with_logits(p[:, 5:], cls_t, reduction="sum")
        parts["noobj"] = parts["noobj"] + F.binary_cross_entropy_with_logits(
            raw[..., 4][noobj], obj_t[noobj], reduction="sum"
        )
    parts = {k: v / bsz for k, v in parts.items()}
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


# -- the model, evaluation, training ----------------------------------------------------------------


def base_model(device) -> Darknet:
    """COCO's YOLOv3-tiny (batch norms kept: they are part of the trained layers' state), layers before
    ``TRAIN_FROM`` frozen, everything in eval mode (batch norms use COCO's statistics)."""
    paths = model_store.default_model_paths()
    model = Darknet.from_files(paths.cfg, paths.weights).to(device)
    for i, layer in enumerate(model.layers):
        layer.requires_grad_(i >= TRAIN_FROM)
    return model.eval()


def head_state(model: Darknet) -> dict:
    return {
        k.split(".", 1)[1]: v.detach().to(torch.float16)
        for k, v in model.state_dict().items()
        if int(k.split(".")[1]) >= TRAIN_FROM
    }


def _to_input(imgs_u8: torch.Tensor, device) -> torch.Tensor:
    return imgs_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def heldout_set(n: int, seed: int = 4242, split: str = "heldout") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Rendered scenes with clock styles no training used (``clockface``'s held-out family)."""
    rng = np.random.default_rng(seed)
    imgs, boxes = zip(*(render_scene(rng, split) for _ in range(n)), strict=True)
    return torch.from_numpy(np.stack(imgs)), [torch.from_numpy(b) for b in boxes]


@torch.no_grad()
def evaluate(model: Darknet, imgs: torch.Tensor, boxes: list[torch.Tensor], device, min_score: float = 0.3) -> dict:
    """Recall (IoU >= 0.5) of the clocks, and false boxes per image, at ``min_score`` after NMS."""
    found = total = false = 0
    for i in range(0, len(imgs), 32):
        out = model(_to_input(imgs[i : i + 32], device)).float()
        for row, truth in zip(out, boxes[i : i + 32], strict=True):
            score = row[:, 4] * row[:, 5 + CLOCK]
            keep = score >= min_score
            pred = cxcywh_to_xywh(row[keep, :4] * INPUT)
            pred = pred[nms(pred, score[keep], torch.zeros_like(score[keep], dtype=torch.long), 0.45)]
            total += len(truth)
            if len(truth) and len(pred):
                iou = iou_matrix(_xywh(truth.to(device)), pred)
                found += int((iou.max(1).values >= 0.5).sum())
                false += int((iou.max(0).values < 0.5).sum())
            else:
                false += len(pred)
    return {"recall": round(found / max(total, 1), 3), "false_per_image": round(false / len(imgs), 3), "clocks": total}


def train(args) -> int:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    model = base_model(device)
    heads = [layer for layer in model.layers if isinstance(layer, YoloHead)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=5e-4)
    step = 0
    if args.resume:
        ck = torch.load(args.resume, map_location=device, weights_only=False)
        model.load_state_dict({f"layers.{k}": v.float() for k, v in ck["layers"].items()}, strict=False)
        step = ck["step"]
        opt_path = Path(args.resume).with_name("opt.pt")
        if opt_path.is_file():
            opt.load_state_dict(torch.load(opt_path, map_location=device, weights_only=False))
        print(f"resumed from {args.resume} at step {step}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loader = training.loader(
        training.Rendered(render_scene, args.seed + step), args.batch, args.workers, device, collate
    )
    held = heldout_set(args.eval_n)
    print(f"step {step} heldout {evaluate(model, *held, device)}", flush=True)
    t0, first = time.time(), step
    deadline = t0 + args.minutes * 60

    def save():
        torch.save({"layers": head_state(model), "step": step, "train_from": TRAIN_FROM}, out / "last.pt")
        torch.save(opt.state_dict(), out / "opt.pt")

    for imgs, boxes in loader:
        lr = training.learning_rate(args.lr, step, first, args.total_steps, warmup=100)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            raws = model(_to_input(imgs, device), raw=True)
        loss, parts = yolo_loss(raws, heads, boxes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % args.log_every == 0:
            rate = (step - first) / (time.time() - t0)
            print(
                f"step {step} loss {loss.item():.3f} {' '.join(f'{k} {v:.3f}' for k, v in parts.items())} lr {lr:.1e} "
                f"{time.time() - t0:.0f}s {rate:.2f} it/s",
                flush=True,
            )
        stop = time.time() > deadline or step >= args.total_steps
        if step % args.eval_every == 0 or stop:
            print(f"step {step} heldout {evaluate(model, *held, device)}", flush=True)
            save()
        if stop:
            break
    print(f"stopped at step {step} after {time.time() - t0:.0f} s; checkpoint {out / 'last.pt'}", flush=True)
    return 0


def export(checkpoint: str, dest: Path) -> str:
    """The checkpoint's trained layers, fp16, with the base weights they go on: the file ``Detector(head=...)``
    loads."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    base = next(f for f in model_store.DEFAULT_FILES if f.name.endswith(".weights"))
    return training.write_weights(
        {
            "layers": {k: v.to(torch.float16) for k, v in ck["layers"].items()},
            "train_from": ck["train_from"],
            "step": ck["step"],
            "base_weights_sha256": base.sha256,
            "labels": [CLOCK_LABEL],
        },
        dest,
    )


def main(argv=None) -> int:
    ap = training.parser(
        "python -m clockwork.training.train_detector",
        __doc__,
        out="var/detector",
        total_steps=20_000,
        batch=64,
        lr=5e-4,
        eval_n=500,
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--export", metavar="CHECKPOINT", help="write the fp16 head of CHECKPOINT to --to")
    ap.add_argument("--to", default="clock_head.pt", help="where --export writes")
    args = ap.parse_args(argv)
    training.refuse_below_one(ap, args, "total_steps", "batch", "eval_every", "log_every")
    if args.export:
        export(args.export, Path(args.to))
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
