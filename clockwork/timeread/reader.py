"""Where a clock becomes a time: read the time an analog clock shows, from its detected box.

    reader = ClockReader()                        # the embedded weights, sha256-checked
    readings = reader.read_boxes(frame, [det])    # -> [Reading(minutes=610, hhmm="10:10", confidence=.., readable=..)]

The model (``ReaderNet``) is a small residual network that looks at a square crop around the
clock (``crop_box``: the box grown by ``MARGIN`` and squared, resized to ``INPUT`` pixels) and gives
scores over the 720 minutes of a 12-hour dial plus a "readable" score. A blurred, hidden or
back-facing dial, or something that is not a dial, scores low on "readable"; callers keep readings at
or above ``READABLE_THRESHOLD``. It is trained on clocks rendered on the fly (``clockwork.training.train_reader``;
docs/READER.md has the record) in the spirit of Yang, Xie and Zisserman, "It's About Time" (CVPR 2022),
without their alignment network: perspective is left to the classifier, which sees it in training.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from clockwork.detect.model_store import pinned_sha256, sha256_of
from clockwork.errors import ModelError
from clockwork.settings import DETECT
from clockwork.timeread.clocktime import ClockTime

INPUT = 96
MARGIN = 1.15  # the crop is the box's longer side times this, centred on the box
MINUTES = 720
READABLE_THRESHOLD = DETECT.readable_threshold
WEIGHTS = Path(__file__).parent.parent / "models" / "clock_reader.pt"
# Pinned like the detector's weights: a different file is refused with both hashes named.
WEIGHTS_SHA256 = "afbc50517b09bd3215a59eda48969dfde6153b0526381957ab80435e83e390cf"


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ReaderNet(nn.Module):
    """96x96 RGB -> (720 minute logits, 1 readable logit). About 3.8 M parameters.

    Two coordinate channels (x and y from the crop's centre) join the colour channels, so where a hand
    points is plain to the convolutions. A residual network takes the crop down to 6x6; the minute logits
    are the sum of three heads: one over the 720 minutes, one over the minute within the hour (the minute
    hand alone, shared by all twelve hours) and one over the hour (the hour hand's sector)."""

    def __init__(self):
        super().__init__()

        def conv(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            )

        self.features = nn.Sequential(
            conv(5, 32, 2),
            _Residual(32),  # 48
            conv(32, 64, 2),
            _Residual(64),  # 24
            conv(64, 128, 2),
            _Residual(128),
            _Residual(128),  # 12
            conv(128, 256, 2),
            _Residual(256),  # 6
            nn.Conv2d(256, 64, 1),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 6 * 6, 512), nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.minutes = nn.Linear(512, MINUTES)
        self.minute_hand = nn.Linear(512, 60)
        self.hour = nn.Linear(512, 12)
        self.readable = nn.Linear(512, 1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, INPUT), torch.linspace(-1, 1, INPUT), indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1).to(x.dtype)], 1)
        h = self.fc(self.features(x))
        logits = self.minutes(h) + self.minute_hand(h).repeat(1, 12) + self.hour(h).repeat_interleave(60, dim=1)
        return logits, self.readable(h).squeeze(-1)


Reading = ClockTime  # what the reader gives: the time a dial shows, with confidence and readability


def crop_box(image: np.ndarray | torch.Tensor, box: Sequence[float], size: int = INPUT) -> np.ndarray:
    """The square crop around ``box`` (x, y, w, h in pixels), grown by MARGIN, resized to ``size``;
    parts outside the image repeat its edge. ``image`` is an RGB array [H, W, 3], or a frame on the GPU: then
    only the part the crop samples is copied to the host, not the frame (a 1080p frame is 6 MB)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * MARGIN
    if isinstance(image, torch.Tensor):
        image, x0, y0 = _host_region(image, x + w / 2, y + h / 2, side)
        x, y = x - x0, y - y0
    cx, cy = x + w / 2, y + h / 2
    scale = size / max(side, 1.0)
    m = np.float32([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def _host_region(image: torch.Tensor, cx: float, cy: float, side: float) -> tuple[np.ndarray, int, int]:
    """The part of ``image`` a crop of ``side`` around (cx, cy) samples, two pixels to spare, copied to the host, and
    its top-left corner. Cropping this part equals cropping the whole image: at the image's edges both repeat the
    edge."""
    hgt, wid = int(image.shape[0]), int(image.shape[1])
    half = side / 2 + 2
    x0 = min(wid - 1, max(0, int(np.floor(cx - half))))
    y0 = min(hgt - 1, max(0, int(np.floor(cy - half))))
    x1 = max(x0 + 1, min(wid, int(np.ceil(cx + half)) + 1))
    y1 = max(y0 + 1, min(hgt, int(np.ceil(cy + half)) + 1))
    return image[y0:y1, x0:x1].cpu().numpy(), x0, y0


def to_tensor(crops: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(np.stack(list(crops)))).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - 0.5) / 0.25


def decode(minute_logits: torch.Tensor, readable_logit: torch.Tensor) -> list[Reading]:
    p = minute_logits.float().softmax(-1)
    best = p.argmax(-1)
    idx = torch.stack([(best - 1) % MINUTES, best, (best + 1) % MINUTES], -1)
    conf = p.gather(-1, idx).sum(-1)
    readable = readable_logit.float().sigmoid()
    return [
        Reading(int(b), float(c), float(r))
        for b, c, r in zip(best.tolist(), conf.tolist(), readable.tolist(), strict=True)
    ]


class ClockReader:
    """The time reader, ready for batched reading on the CPU or a GPU."""

    def __init__(self, weights: str | Path | None = None, *, device: str | torch.device = "cpu"):
        path = Path(weights) if weights else WEIGHTS
        if not path.is_file():
            raise ModelError(
                f"clock reader weights not found: {path} (train them with python -m clockwork.training.train_reader)"
            )
        self.sha256 = pinned_sha256(path, WEIGHTS_SHA256) if weights is None else sha256_of(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net = ReaderNet()
            self.net.load_state_dict({k: v.float() for k, v in state["model"].items()})
        except Exception as exc:
            raise ModelError(
                f"{path}: not clock reader weights ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        self.device = torch.device(device)
        self.net.to(self.device).eval()

    @property
    def info(self) -> dict:
        return {"name": "clock-reader", "input_size": INPUT, "weights_sha256": self.sha256}

    @torch.inference_mode()
    def read(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        """Read square RGB crops of ``INPUT`` pixels (``crop_box`` makes them)."""
        if len(crops) == 0:
            return []
        minute_logits, readable = self.net(to_tensor(crops).to(self.device))
        return decode(minute_logits, readable)

    def read_boxes(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[Reading]:
        """Read the clocks at ``boxes`` (x, y, w, h) in one RGB frame."""
        return self.read([crop_box(image, b) for b in boxes])


@functools.cache
def shared_reader(device: str = "cpu") -> ClockReader:
    """One reader per device in a process, loaded on first use (detect_video, Serve replicas, the in-process API)."""
    return ClockReader(device=device)
