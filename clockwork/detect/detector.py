"""Where a frame becomes a detection: letterbox, batched darknet inference, thresholds, NMS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from clockwork._logging import logger
from clockwork.detect import model_store
from clockwork.detect.boxes import (
    LETTERBOX_FILL,
    Letterbox,
    cxcywh_to_xywh,
    letterbox_region,
    merge_contained,
    nms,
    view_letterbox,
)
from clockwork.detect.darknet import Darknet
from clockwork.errors import ModelError, unknown_label_message
from clockwork.settings import DETECT
from clockwork.timeline.result import Detection, FrameDetections
from clockwork.video.frames import FrameBatch
from clockwork.video.views import plan_views

# Boxes under this objectness x class probability never reach NMS, whatever the caller's threshold.
CANDIDATE_FLOOR = 0.01

# The fine-tuned clock head shipped in the package (python -m clockwork.training.train_detector; docs/DETECTOR.md, run
# gpu-3),
# pinned like the reader's weights. ``head="clock"`` names it.
CLOCK_HEAD = Path(__file__).parent.parent / "models" / "clock_head.pt"
CLOCK_HEAD_SHA256 = "32fd1823dc916c4556546191754afefe59c847b7fa2f18e7fd1ebe96fca1b684"
_UNSAID = object()


def resolve_head(head: str | Path | None) -> tuple[Path, str | None] | None:
    """``"clock"``: the embedded clock head and its checked sha256; ``None`` or ``"none"``: no head (COCO's own);
    else a head file (its sha256 is taken once it has loaded)."""
    if head is None or str(head) in ("", "none"):
        return None
    if str(head) != "clock":
        return Path(head), None
    if not CLOCK_HEAD.is_file():
        raise ModelError(f"the embedded clock head {CLOCK_HEAD} is missing; reinstall clockwork, or pass head none")
    return CLOCK_HEAD, model_store.pinned_sha256(CLOCK_HEAD, CLOCK_HEAD_SHA256)


Thresholds = float | Mapping[str, float]


@dataclass
class Prepared:
    """Frames ready for the model, one row per view of a frame: uint8 [R,S,S,3] letterboxed on the host,
    or a normalised [R,3,S,S] tensor on the device. ``metas[r]`` maps row r's boxes back to source pixels
    and ``frame_of[r]`` names its frame (0 .. ``n_frames`` - 1)."""

    images: np.ndarray | torch.Tensor
    metas: list[Letterbox]
    frame_of: list[int]
    n_frames: int

    def __len__(self) -> int:
        return len(self.metas)

    @staticmethod
    def concat(parts: Sequence[Prepared]) -> Prepared:
        if len(parts) == 1:
            return parts[0]
        on_host = isinstance(parts[0].images, np.ndarray)
        images = np.concatenate([p.images for p in parts]) if on_host else torch.cat([p.images for p in parts])
        frame_of, offset = [], 0
        for p in parts:
            frame_of += [f + offset for f in p.frame_of]
            offset += p.n_frames
        return Prepared(images, [m for p in parts for m in p.metas], frame_of, offset)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CPU unless a GPU is seen; an explicit ``cuda`` without one is an error, not a silent fallback."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Invalid device ({device!r}): no CUDA device is visible. Supported values here are 'cpu' and 'auto'."
        )
    return dev


class Detector:
    """A darknet YOLO model ready for batched inference.

    ``Detector()`` loads the embedded default (YOLOv3-tiny, COCO). Pass ``cfg``/``weights``/``names``
    to load another darknet model (full YOLOv3, YOLOv4-tiny) from the user's paths. ``half``: fp16 on CUDA
    (``DETECT.half``). ``fuse``: batch norms folded into the convolutions (the same outputs, fewer kernels;
    False only to measure the difference, bench/profile.py ``--unfused``). ``head``: fine-tuned layers laid
    over the model (``resolve_head``: "clock", the embedded clock head; None, COCO's own; or a file that
    ``python -m clockwork.training.train_detector --export`` wrote); ``DETECT.head`` for the embedded model, None
    for another model given by ``cfg``/``weights``.
    """

    def __init__(
        self,
        cfg: str | Path | None = None,
        weights: str | Path | None = None,
        names: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        input_size: int | None = None,
        half: bool = DETECT.half,
        iou_threshold: float = DETECT.iou_threshold,
        micro_batch: int | None = None,
        fuse: bool = True,
        head: str | Path | None | object = _UNSAID,
    ):
        if (cfg is None) != (weights is None):
            raise ModelError("pass both cfg and weights, or neither for the embedded default model")
        if cfg is None:
            paths = model_store.default_model_paths()
            cfg, weights, names = paths.cfg, paths.weights, names or paths.names
            self.name = model_store.DEFAULT_MODEL_NAME
            head = DETECT.head if head is _UNSAID else head
        else:
            self.name = Path(cfg).stem
            head = None if head is _UNSAID else head
        self.device = resolve_device(device)
        self.model = Darknet.from_files(cfg, weights)
        resolved = resolve_head(head)
        self.head_sha256 = None
        self.head_labels: tuple[str, ...] | None = None  # what a fine-tuned head finds; its other classes are untrained
        if resolved is not None:  # fine-tuned layers over the base model (clockwork.training.train_detector)
            path, digest = resolved
            self.head_labels = self.model.load_head(path)
            self.head_sha256 = digest or model_store.sha256_of(path)
            self.name += "+" + path.stem
        if fuse:
            self.model.fuse()
        self.input_size = int(input_size or self.model.width)
        if self.input_size % 32:
            raise ValueError(f"Invalid input_size ({self.input_size}). Supported values are multiples of 32.")
        self.labels = self._load_names(names, self.model.classes)
        self.half = bool(half and self.device.type == "cuda")
        self.dtype = torch.float16 if self.half else torch.float32
        # Channels-last, and on the CPU one frame at a time: a big batch is cache-bound there (bench/cpu.py,
        # docs/records/: batch 16 at 19.7 frames/s, then 40.6 this way). GPUs take the batch whole.
        self.model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        self.micro_batch = micro_batch or (1 if self.device.type == "cpu" else None)
        self.iou_threshold = iou_threshold
        self.weights_sha256 = model_store.sha256_of(Path(weights))
        logger.info(
            "loaded %s (%d classes) on %s, input %d, %s",
            self.name,
            len(self.labels),
            self.device,
            self.input_size,
            self.dtype,
        )

    @staticmethod
    def _load_names(names: str | Path | None, classes: int) -> list[str]:
        if names is None:
            return [str(i) for i in range(classes)]
        labels = [line.strip() for line in Path(names).read_text().splitlines() if line.strip()]
        if len(labels) != classes:
            raise ModelError(f"{names}: {len(labels)} names for a model of {classes} classes")
        return labels

    @property
    def model_info(self) -> dict:
        info = {"name": self.name, "input_size": self.input_size, "weights_sha256": self.weights_sha256}
        if self.head_sha256:
            info["head_sha256"] = self.head_sha256
        return info

    @property
    def findable_labels(self) -> list[str]:
        """The labels this detector finds: a fine-tuned head's, else every class of the model."""
        return list(self.head_labels or self.labels)

    def label_ids(self, labels: Iterable[str] | None) -> list[int] | None:
        """Class ids of ``labels`` (None: every class; with a fine-tuned head, the head's labels)."""
        if labels is None:
            return None if self.head_labels is None else [self.labels.index(label) for label in self.head_labels]
        ids = []
        for label in labels:
            if label not in self.labels:
                if self.head_labels is not None:  # suggest what this head finds, not COCO names it refuses
                    raise ValueError(
                        unknown_label_message(label, list(self.head_labels))
                        + f" This detector's head ({self.name}) finds only {', '.join(self.head_labels)}; "
                        "--head none (the Serve detector's head: none) has COCO's classes."
                    )
                raise ValueError(unknown_label_message(label, self.labels))
            if self.head_labels is not None and label not in self.head_labels:
                raise ValueError(
                    f"label {label!r}: this detector's fine-tuned head ({self.name}) finds only "
                    f"{', '.join(self.head_labels)}; --head none (the Serve detector's head: none) uses "
                    f"COCO's own heads, which find {label!r}"
                )
            ids.append(self.labels.index(label))
        return ids

    # -- one batch of frames -> detections ---------------------------------------------------------

    def detect_batch(
        self,
        batch: FrameBatch,
        *,
        min_score: Thresholds = DETECT.min_score,
        labels: Iterable[str] | None = DETECT.labels,
        views: Sequence[str] = DETECT.views,
        stride: int = 1,
    ) -> list[FrameDetections]:
        """The detections of every frame in ``batch`` (frames without any included), CPU or GPU frames alike,
        with every view of ``views`` merged (the views after the first on every ``stride``-th frame:
        ``clockwork.video.views.view_stride``)."""
        prepared = self.prepare(batch, views, stride)
        found = self.postprocess(self.infer(self.model_input(prepared)), prepared, min_score=min_score, labels=labels)
        return [FrameDetections(i, t, d) for i, t, d in zip(batch.indexes, batch.timestamps, found, strict=True)]

    def prepare(self, batch: FrameBatch, views: Sequence[str] = DETECT.views, stride: int = 1) -> Prepared:
        """One row per view of each frame, letterboxed where the frames are: on the GPU for NVDEC frames,
        on the host for CPU frames. The first view sees every frame; the others only the frames whose number is
        a multiple of ``stride`` (1: every frame)."""
        n, h, w = len(batch), batch.data.shape[1], batch.data.shape[2]
        plan = plan_views(views, w, h)
        every = list(range(n))
        some = every if stride <= 1 else [i for i, index in enumerate(batch.indexes) if index % stride == 0]
        parts = [
            (
                v,
                view_letterbox(v.x0, v.y0, v.w, v.h, self.input_size, v.zoom, frame_w=w, frame_h=h),
                every if v.name == plan[0].name else some,
            )
            for v in plan
        ]
        parts = [(v, m, sel) for v, m, sel in parts if sel]
        frame_of = [i for _, _, sel in parts for i in sel]
        rows = [m for _, m, sel in parts for _ in sel]
        if batch.on_gpu:
            images = torch.cat(
                [
                    self._letterbox_gpu_view(batch.data if len(sel) == n else batch.data[sel], m, area=v.zoom < 1)
                    for v, m, sel in parts
                ]
            )
        else:
            images = np.stack(
                [
                    letterbox_region(batch.data[i], m, self.input_size, area=v.zoom < 1)
                    for v, m, sel in parts
                    for i in sel
                ]
            )
        return Prepared(images, rows, frame_of, n)

    def model_input(self, prepared: Prepared) -> torch.Tensor:
        if isinstance(prepared.images, np.ndarray):
            return self.normalise(torch.from_numpy(prepared.images).to(self.device, non_blocking=True))
        return prepared.images

    # -- the three stages -------------------------------------------------------------------------

    def _letterbox_gpu_view(self, frames_u8_nhwc: torch.Tensor, lb: Letterbox, *, area: bool) -> torch.Tensor:
        """One view of a batch of same-size frames already on the device: crop, one resize, one pad, no
        host copy. Returns the normalised [N,3,S,S] rows the model takes."""
        n = frames_u8_nhwc.shape[0]
        x0, y0 = int(lb.off_x), int(lb.off_y)
        x = frames_u8_nhwc[:, y0 : y0 + lb.src_h, x0 : x0 + lb.src_w].permute(0, 3, 1, 2).to(self.dtype)
        new_w, new_h = int(round(lb.src_w * lb.scale)), int(round(lb.src_h * lb.scale))
        if (new_w, new_h) != (lb.src_w, lb.src_h):
            x = (
                F.interpolate(x, size=(new_h, new_w), mode="area")
                if area
                else F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
            )
        out = torch.full(
            (n, 3, self.input_size, self.input_size), float(LETTERBOX_FILL), dtype=self.dtype, device=x.device
        )
        out[:, :, int(lb.pad_y) : int(lb.pad_y) + new_h, int(lb.pad_x) : int(lb.pad_x) + new_w] = x
        return out.div_(255.0).contiguous(memory_format=torch.channels_last)

    def normalise(self, batch_u8_nhwc: torch.Tensor) -> torch.Tensor:
        x = batch_u8_nhwc.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        step = self.micro_batch
        if not step or batch.shape[0] <= step:
            return self.model(batch)
        return torch.cat([self.model(batch[i : i + step]) for i in range(0, batch.shape[0], step)])

    @torch.inference_mode()
    def postprocess(
        self,
        raw: torch.Tensor,
        prepared: Prepared,
        *,
        min_score: Thresholds = DETECT.min_score,
        labels: Iterable[str] | None = None,
        merge: bool = True,
    ) -> list[list[Detection]]:
        """Raw [R, boxes, 5+C] outputs -> detections per frame, in source pixels, highest score first.

        Boxes cut by a tile's inner edge are dropped; the boxes of every view of a frame then meet in one
        class-aware NMS in source pixels; with ``merge`` a box mostly inside a larger box of its class is
        merged into it (``boxes.merge_contained``, ``DETECT.contain_threshold``).
        Only candidate boxes leave the device, in one transfer for the whole batch."""
        ids = self.label_ids(labels)
        thresholds = self._thresholds(min_score).to(raw.device)
        obj = raw[..., 4:5].float()
        if ids is not None:  # score only the wanted classes: 80x less work for "clock"
            wanted = torch.tensor(ids, device=raw.device)
            best, arg = (raw[..., 5:].index_select(-1, wanted).float() * obj).max(dim=-1)
            cls = wanted[arg]
        else:
            best, cls = (raw[..., 5:].float() * obj).max(dim=-1)
        floor = max(CANDIDATE_FLOOR, float(thresholds.min()))
        sel = (best >= floor) & (best >= thresholds[cls])
        row_idx, box_idx = sel.nonzero(as_tuple=True)
        cand = (
            torch.cat(
                [
                    raw[row_idx, box_idx, :4].float(),
                    best[row_idx, box_idx, None],
                    cls[row_idx, box_idx, None].float(),
                    row_idx[:, None].float(),
                ],
                dim=1,
            )
            .cpu()
            .double()
        )
        out: list[list[Detection]] = [[] for _ in range(prepared.n_frames)]
        if cand.numel() == 0:
            return out
        rows = cand[:, 6].long()
        # every view's letterbox, one row each, gathered per candidate: source pixels in one vectorised step
        lb = torch.tensor(
            [
                [
                    m.scale,
                    m.pad_x,
                    m.pad_y,
                    m.src_w,
                    m.src_h,
                    m.off_x,
                    m.off_y,
                    m.frame_w or m.src_w + m.off_x,
                    m.frame_h or m.src_h + m.off_y,
                ]
                for m in prepared.metas
            ],
            dtype=torch.float64,
        )[rows]
        px = cxcywh_to_xywh(cand[:, :4]) * self.input_size
        x0 = ((px[:, 0] - lb[:, 1]) / lb[:, 0]).clamp(min=0).minimum(lb[:, 3])
        y0 = ((px[:, 1] - lb[:, 2]) / lb[:, 0]).clamp(min=0).minimum(lb[:, 4])
        x1 = ((px[:, 0] + px[:, 2] - lb[:, 1]) / lb[:, 0]).clamp(min=0).minimum(lb[:, 3])
        y1 = ((px[:, 1] + px[:, 3] - lb[:, 2]) / lb[:, 0]).clamp(min=0).minimum(lb[:, 4])
        # A box cut by a tile's edge inside the frame is half an object: the clock is whole in the
        # overlapping tile or in the full view, so the cut box is dropped (the tiled-inference rule).
        edge = DETECT.tile_edge_px / lb[:, 0]  # network pixels, in source pixels
        cut = (
            ((x0 <= edge) & (lb[:, 5] > 0))
            | ((x1 >= lb[:, 3] - edge) & (lb[:, 5] + lb[:, 3] < lb[:, 7] - 0.5))
            | ((y0 <= edge) & (lb[:, 6] > 0))
            | ((y1 >= lb[:, 4] - edge) & (lb[:, 6] + lb[:, 4] < lb[:, 8] - 0.5))
        )
        whole = ~cut
        x0, y0, x1, y1, lb, cand, rows = x0[whole], y0[whole], x1[whole], y1[whole], lb[whole], cand[whole], rows[whole]
        if cand.numel() == 0:
            return out
        boxes = torch.stack([x0 + lb[:, 5], y0 + lb[:, 6], x1 - x0, y1 - y0], dim=1)
        frames = torch.tensor(prepared.frame_of, dtype=torch.long)[rows]
        scores, classes = cand[:, 4], cand[:, 5].long()
        # One NMS for the whole batch: frames never suppress each other because their boxes are shifted
        # apart (the "batched NMS" offset trick; float64 keeps pixels exact at the offsets).
        shifted = boxes.clone()
        shifted[:, 0] += frames.double() * 1e6
        keep = nms(shifted, scores, classes, self.iou_threshold)
        if merge:
            keep, scores = merge_contained(shifted, scores, classes, keep, DETECT.contain_threshold)
        for b, sc, c, f in zip(
            boxes[keep].tolist(), scores[keep].tolist(), classes[keep].tolist(), frames[keep].tolist(), strict=True
        ):
            if b[2] >= 1 and b[3] >= 1:
                out[f].append(Detection(b[0], b[1], b[2], b[3], self.labels[c], min(1.0, sc)))
        return out

    def _thresholds(self, min_score: Thresholds) -> torch.Tensor:
        if isinstance(min_score, Mapping):
            default = float(min_score.get("*", DETECT.min_score))
            t = torch.full((len(self.labels),), default)
            for label, value in min_score.items():
                if label != "*":
                    t[self.label_ids([label])[0]] = float(value)
        else:
            t = torch.full((len(self.labels),), float(min_score))
        if not bool(((t >= 0) & (t <= 1)).all()):  # NaN fails both comparisons too
            raise ValueError(
                f"Invalid min_score ({min_score!r}). Supported values are numbers in [0, 1], or a mapping of label to "
                "such a number."
            )
        return t

    def detect(
        self,
        images: Sequence[np.ndarray],
        *,
        min_score: Thresholds = DETECT.min_score,
        labels: Iterable[str] | None = None,
        views: Sequence[str] = ("full",),
        merge: bool = False,
    ) -> list[list[Detection]]:
        """Detect objects in RGB images of any sizes. By default what the model itself gives, as darknet
        would: the whole image, plain NMS (the reference tests compare this with OpenCV's importer)."""
        out = []
        for image in images:
            batch = FrameBatch([0], [0.0], image[None])
            prepared = self.prepare(batch, views)
            out += self.postprocess(
                self.infer(self.model_input(prepared)), prepared, min_score=min_score, labels=labels, merge=merge
            )
        return out
