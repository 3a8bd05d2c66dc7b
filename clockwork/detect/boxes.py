"""Box geometry: letterboxing, coordinate conversion and non-maximum suppression, in torch.

Our own NMS keeps torchvision out of the dependencies (its wheels are tied to one torch build).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

LETTERBOX_FILL = 127  # darknet pads with 0.5 grey


@dataclass(frozen=True)
class Letterbox:
    """How a region of a source frame was fitted into the square network input: the region of
    ``src_w`` x ``src_h`` pixels whose top-left is (``off_x``, ``off_y``) in the frame (the whole frame
    by default) was scaled by ``scale`` and placed at (``pad_x``, ``pad_y``)."""

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int
    off_x: float = 0.0
    off_y: float = 0.0
    frame_w: int | None = None  # the whole frame, when the region is a crop of it (a tile)
    frame_h: int | None = None


def view_letterbox(
    x0: int,
    y0: int,
    w: int,
    h: int,
    size: int,
    zoom: float = 1.0,
    *,
    frame_w: int | None = None,
    frame_h: int | None = None,
) -> Letterbox:
    """The letterbox of the region (x0, y0, w, h) of a ``frame_w`` x ``frame_h`` frame, shrunk further by
    ``zoom`` (< 1 leaves a grey margin)."""
    scale = min(size / w, size / h) * zoom
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    return Letterbox(
        scale, (size - new_w) // 2, (size - new_h) // 2, w, h, x0, y0, frame_w or w + x0, frame_h or h + y0
    )


def letterbox_region(image: np.ndarray, lb: Letterbox, size: int, *, area: bool = False) -> np.ndarray:
    """Cut ``lb``'s region out of ``image`` and letterbox it: bilinear, or area interpolation with
    ``area`` (the zoomed-out view, shrunk far); the GPU path does the same. Returns uint8 HxWx3."""
    x0, y0 = int(lb.off_x), int(lb.off_y)
    region = image[y0 : y0 + lb.src_h, x0 : x0 + lb.src_w]
    new_w, new_h = int(round(lb.src_w * lb.scale)), int(round(lb.src_h * lb.scale))
    if (new_w, new_h) != (lb.src_w, lb.src_h):
        region = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    out = np.full((size, size, 3), LETTERBOX_FILL, dtype=np.uint8)
    out[int(lb.pad_y) : int(lb.pad_y) + new_h, int(lb.pad_x) : int(lb.pad_x) + new_w] = region
    return out


def letterbox_params(src_w: int, src_h: int, size: int) -> Letterbox:
    """The letterbox of a whole ``src_w`` x ``src_h`` image (the ``full`` view)."""
    return view_letterbox(0, 0, src_w, src_h, size)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``size`` x ``size`` with grey. Returns uint8 HxWx3."""
    lb = letterbox_params(image.shape[1], image.shape[0], size)
    return letterbox_region(image, lb, size), lb


def cxcywh_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """Centre/size to top-left/size."""
    out = boxes.clone()
    out[..., 0] = boxes[..., 0] - boxes[..., 2] / 2
    out[..., 1] = boxes[..., 1] - boxes[..., 3] / 2
    return out


def unletterbox(boxes_xywh: torch.Tensor, lb: Letterbox, size: int) -> torch.Tensor:
    """Map top-left/size boxes normalised to the network input back to source pixels, clipped."""
    px = boxes_xywh * size
    x0 = ((px[:, 0] - lb.pad_x) / lb.scale).clamp(0, lb.src_w)
    y0 = ((px[:, 1] - lb.pad_y) / lb.scale).clamp(0, lb.src_h)
    x1 = ((px[:, 0] + px[:, 2] - lb.pad_x) / lb.scale).clamp(0, lb.src_w)
    y1 = ((px[:, 1] + px[:, 3] - lb.pad_y) / lb.scale).clamp(0, lb.src_h)
    return torch.stack([x0 + lb.off_x, y0 + lb.off_y, x1 - x0, y1 - y0], dim=1)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of top-left/size boxes ``a`` [N,4] and ``b`` [M,4]."""
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = (torch.minimum(ax1[:, None], bx1[None]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    ih = (torch.minimum(ay1[:, None], by1[None]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / union.clamp(min=1e-9)


def inside_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise share of each box of ``b`` that lies inside each box of ``a``: [N, M]."""
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = (torch.minimum(ax1[:, None], bx1[None]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    ih = (torch.minimum(ay1[:, None], by1[None]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    return iw * ih / (b[:, 2] * b[:, 3])[None].clamp(min=1e-9)


def merge_contained(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, keep: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """After NMS: a kept box with at least ``threshold`` of itself inside a larger kept box of its class is
    part of that object (the dial the model boxes again inside the whole clock, or what one view saw of
    it) and is dropped; the larger box takes the higher of the two scores. Returns (keep, scores), keep
    ordered by score."""
    if keep.numel() < 2:
        return keep, scores
    b = boxes[keep]
    inside = inside_matrix(b, b).cpu().numpy()  # [i, j]: share of j inside i
    area = (b[:, 2] * b[:, 3]).cpu().numpy()
    cls = classes[keep].cpu().numpy()
    # holds[i, j]: i is a larger box of j's class holding enough of j. The loop below runs in NumPy over the boxes
    # held by another only: a batch's NMS keeps every frame's boxes at once (hundreds), and element-wise tensor
    # indexing here was a fifth of a detector replica's time holding the GIL.
    holds = (cls[:, None] == cls[None, :]) & (area[:, None] > area[None, :]) & (inside >= threshold)
    own = scores[keep].cpu().numpy().copy()
    alive = np.ones(len(own), dtype=bool)
    for j in np.argsort(area, kind="stable"):  # smallest first
        holders = np.flatnonzero(holds[:, j] & alive)
        if holders.size:
            i = holders[np.argmax(area[holders])]
            own[i] = max(own[i], own[j])
            alive[j] = False
    scores = scores.clone()
    scores[keep] = torch.from_numpy(own).to(scores)
    keep = keep[torch.from_numpy(alive).to(keep.device)]
    return keep[torch.argsort(scores[keep], descending=True)], scores


def nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy per-class NMS on top-left/size boxes. Returns kept indexes, highest score first."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True)
    boxes, classes = boxes[order], classes[order]
    iou = iou_matrix(boxes, boxes)
    same = classes[:, None] == classes[None, :]
    suppress = ((iou > iou_threshold) & same).triu(diagonal=1).cpu()
    n = boxes.shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    for i in range(n):
        if keep[i]:
            keep &= ~suppress[i]
    return order[keep.to(order.device)]
