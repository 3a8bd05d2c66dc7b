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
    """How a source image was fitted into the square network input."""

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int


def letterbox_params(src_w: int, src_h: int, size: int) -> Letterbox:
    scale = min(size / src_w, size / src_h)
    new_w, new_h = int(round(src_w * scale)), int(round(src_h * scale))
    return Letterbox(scale, (size - new_w) // 2, (size - new_h) // 2, src_w, src_h)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``size`` x ``size`` with grey. Returns uint8 HxWx3."""
    h, w = image.shape[:2]
    lb = letterbox_params(w, h, size)
    new_w, new_h = int(round(w * lb.scale)), int(round(h * lb.scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (w, h) else image
    out = np.full((size, size, 3), LETTERBOX_FILL, dtype=np.uint8)
    out[int(lb.pad_y) : int(lb.pad_y) + new_h, int(lb.pad_x) : int(lb.pad_x) + new_w] = resized
    return out, lb


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
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=1)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of top-left/size boxes ``a`` [N,4] and ``b`` [M,4]."""
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = (torch.minimum(ax1[:, None], bx1[None]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    ih = (torch.minimum(ay1[:, None], by1[None]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / union.clamp(min=1e-9)


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
