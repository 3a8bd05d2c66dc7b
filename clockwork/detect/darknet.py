"""A PyTorch loader for darknet ``.cfg`` + ``.weights`` files.

Supports the layers of YOLOv3, YOLOv3-tiny and YOLOv4-tiny: convolutional (with or without
batch-norm; leaky, linear, mish, swish, logistic or relu activation), maxpool (including
YOLOv3-tiny's size-2 stride-1 layer), route (with ``groups``/``group_id``), shortcut, upsample and
yolo. OpenCV 5 dropped its darknet importer, which is why the project owns this.

``Darknet.forward`` returns one tensor ``[batch, boxes, 5 + classes]`` holding, per box,
``cx, cy, w, h`` normalised to the network input (0..1), the objectness and the per-class
probabilities (sigmoid), the same layout OpenCV's darknet importer produced.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from clockwork.errors import ModelError

SUPPORTED_LAYERS = ("net", "convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")
SUPPORTED_ACTIVATIONS = ("leaky", "linear", "mish", "swish", "logistic", "relu")


@dataclass
class Section:
    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default=None, cast=str):
        if key not in self.options:
            return default
        return cast(self.options[key])

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.options:
            return list(default or [])
        return [int(v) for v in self.options[key].split(",") if v.strip()]


def parse_cfg(path: str | Path) -> list[Section]:
    """Parse a darknet cfg into sections; raises :class:`ModelError` naming the line on bad input."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"cannot read darknet cfg {path}: {exc.strerror}") from exc
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelError(f"{path}:{lineno}: malformed section header {raw!r}")
            sections.append(Section(line[1:-1].strip().lower(), {}, lineno))
        elif "=" in line:
            if not sections:
                raise ModelError(f"{path}:{lineno}: option outside a section: {raw!r}")
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ModelError(f"{path}:{lineno}: expected 'key=value' or '[section]', got {raw!r}")
    if not sections or sections[0].type not in ("net", "network"):
        raise ModelError(f"{path}: the first section must be [net], got {sections[0].type if sections else 'nothing'}")
    for sec in sections[1:]:
        if sec.type not in SUPPORTED_LAYERS:
            raise ModelError(
                f"{path}:{sec.line}: unsupported layer [{sec.type}]. Supported layers are "
                f"{', '.join(SUPPORTED_LAYERS[1:])}."
            )
    return sections


def _activation(name: str, where: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "linear":
        return nn.Identity()
    if name == "mish":
        return nn.Mish()
    if name == "swish":
        return nn.SiLU()
    if name == "logistic":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    raise ModelError(
        f"{where}: unsupported activation {name!r}. Supported values are {', '.join(SUPPORTED_ACTIVATIONS)}."
    )


class ConvBlock(nn.Module):
    def __init__(self, sec: Section, in_ch: int, where: str):
        super().__init__()
        self.filters = sec.get("filters", cast=int)
        size = sec.get("size", 1, int)
        stride = sec.get("stride", 1, int)
        pad = size // 2 if sec.get("pad", 0, int) else sec.get("padding", 0, int)
        groups = sec.get("groups", 1, int)
        self.bn = bool(sec.get("batch_normalize", 0, int))
        self.conv = nn.Conv2d(in_ch, self.filters, size, stride, pad, groups=groups, bias=not self.bn)
        self.norm = nn.BatchNorm2d(self.filters, eps=1e-5) if self.bn else nn.Identity()
        self.act = _activation(sec.get("activation", "logistic"), where)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))

    def load(self, buf: np.ndarray, offset: int) -> int:
        def take(n: int) -> torch.Tensor:
            nonlocal offset
            if offset + n > buf.size:
                raise ModelError("weights file is shorter than the cfg needs (truncated, or for another cfg)")
            out = torch.from_numpy(buf[offset : offset + n].copy())
            offset += n
            return out

        n = self.filters
        if self.bn:
            self.norm.bias.data.copy_(take(n))
            self.norm.weight.data.copy_(take(n))
            self.norm.running_mean.copy_(take(n))
            self.norm.running_var.copy_(take(n))
        else:
            self.conv.bias.data.copy_(take(n))
        w = self.conv.weight
        w.data.copy_(take(w.numel()).view_as(w))
        return offset


class MaxPool(nn.Module):
    """Darknet max-pooling: padding ``size - 1`` split as darknet does (more at the bottom/right)."""

    def __init__(self, size: int, stride: int, padding: int | None = None):
        super().__init__()
        self.size, self.stride = size, stride
        padding = size - 1 if padding is None else padding
        self.pad = (padding // 2, padding - padding // 2)

    def forward(self, x):
        lo, hi = self.pad
        h, w = x.shape[-2:]
        # Padding only at the bottom and right that no window reaches (size 2, stride 2 on even sides) changes
        # nothing: skip it and the copy it makes.
        unused = lo == 0 and all((n + hi - self.size) // self.stride == (n - self.size) // self.stride for n in (h, w))
        if (lo or hi) and not unused:
            x = F.pad(x, (lo, hi, lo, hi), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Upsample(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class YoloHead(nn.Module):
    def __init__(self, sec: Section, net_w: int, net_h: int, where: str):
        super().__init__()
        mask = sec.ints("mask")
        anchors = sec.ints("anchors")
        if len(anchors) % 2:
            raise ModelError(f"{where}: anchors must be pairs, got {len(anchors)} numbers")
        pairs = [(anchors[i], anchors[i + 1]) for i in range(0, len(anchors), 2)]
        mask = mask or list(range(len(pairs)))
        if any(m >= len(pairs) for m in mask):
            raise ModelError(f"{where}: mask {mask} indexes beyond the {len(pairs)} anchors")
        if sec.get("new_coords", 0, int):
            raise ModelError(f"{where}: new_coords=1 (scaled YOLOv4) is not supported")
        self.classes = sec.get("classes", 80, int)
        self.scale_xy = sec.get("scale_x_y", 1.0, float)
        self.register_buffer("anchors", torch.tensor([pairs[m] for m in mask], dtype=torch.float32), persistent=False)
        self.net_w, self.net_h = net_w, net_h

    def forward(self, x, raw: bool = False):
        b, _, h, w = x.shape
        na = self.anchors.shape[0]
        x = x.view(b, na, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2)
        if (
            raw
        ):  # the logits [batch, anchor, row, column, 5 + classes], for training (clockwork.training.train_detector)
            return x
        # Decoded in fp32 whatever the network's dtype: in fp16 every score above 0.99976 rounds to 1.0, so a confident
        # clock's candidates tie and NMS keeps whichever comes first. On the GPU that was a box 20 px taller than the
        # CPU's (clock_60fps_480p.mp4 frame 64: 0.9999998 against 0.9999095, both 1.0 in fp16; docs/records/).
        x = x.float()
        gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
        s = self.scale_xy
        xy = torch.sigmoid(x[..., 0:2]) * s - (s - 1) / 2
        cx = (xy[..., 0] + gx) / w
        cy = (xy[..., 1] + gy) / h
        anchors = self.anchors.view(1, na, 1, 1, 2)
        bw = torch.exp(x[..., 2]) * anchors[..., 0] / self.net_w
        bh = torch.exp(x[..., 3]) * anchors[..., 1] / self.net_h
        rest = torch.sigmoid(x[..., 4:])
        out = torch.cat([cx[..., None], cy[..., None], bw[..., None], bh[..., None], rest], dim=-1)
        # Box order matches darknet and OpenCV: row, column, then anchor.
        return out.permute(0, 2, 3, 1, 4).reshape(b, h * w * na, 5 + self.classes)


class Darknet(nn.Module):
    """A darknet network built from a parsed cfg. Load weights with :meth:`load_weights`."""

    def __init__(self, sections: list[Section], *, source: str = "<cfg>"):
        super().__init__()
        net = sections[0]
        self.width = net.get("width", 416, int)
        self.height = net.get("height", 416, int)
        channels = net.get("channels", 3, int)
        self.layers = nn.ModuleList()
        self.kinds: list[str] = []
        self.refs: list[list[int]] = []  # absolute indexes of inputs for route/shortcut
        self.groups: list[tuple[int, int]] = []
        out_channels: list[int] = []
        ch = channels
        for i, sec in enumerate(sections[1:]):
            where = f"{source}: layer {i} [{sec.type}] (line {sec.line})"
            refs: list[int] = []
            group = (1, 0)
            if sec.type == "convolutional":
                layer = ConvBlock(sec, ch, where)
                ch = layer.filters
            elif sec.type == "maxpool":
                size = sec.get("size", 2, int)
                layer = MaxPool(size, sec.get("stride", size, int), sec.get("padding", None, int))
            elif sec.type == "upsample":
                layer = Upsample(sec.get("stride", 2, int))
            elif sec.type in ("route", "shortcut"):
                key = "layers" if sec.type == "route" else "from"
                refs = [r if r >= 0 else i + r for r in sec.ints(key)]
                if not refs or any(r < 0 or r >= i for r in refs):
                    raise ModelError(f"{where}: {key}={sec.options.get(key)!r} refers outside layers 0..{i - 1}")
                if sec.type == "route":
                    group = (sec.get("groups", 1, int), sec.get("group_id", 0, int))
                    ch = sum(out_channels[r] for r in refs) // group[0]
                    layer = nn.Identity()
                else:
                    layer = _activation(sec.get("activation", "linear"), where)
            elif sec.type == "yolo":
                layer = YoloHead(sec, self.width, self.height, where)
            else:  # parse_cfg already refused these
                raise ModelError(f"{where}: unsupported layer")
            self.layers.append(layer)
            self.kinds.append(sec.type)
            self.refs.append(refs)
            self.groups.append(group)
            out_channels.append(ch)
        if "yolo" not in self.kinds:
            raise ModelError(f"{source}: no [yolo] layer; only YOLO detectors are supported")
        self.classes = next(layer.classes for layer in self.layers if isinstance(layer, YoloHead))

    @classmethod
    def from_files(cls, cfg: str | Path, weights: str | Path | None = None) -> Darknet:
        model = cls(parse_cfg(cfg), source=str(cfg))
        if weights is not None:
            model.load_weights(weights)
        return model.eval()

    def fuse(self) -> Darknet:
        """Fold each batch norm into its convolution, for inference: one kernel fewer per layer. The profile
        on an H100 (bench/profile.py, docs/records/) had batch norm at a sixth of the model's GPU time."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        for layer in self.layers:
            if isinstance(layer, ConvBlock) and layer.bn:
                layer.conv = fuse_conv_bn_eval(layer.conv, layer.norm)
                layer.norm, layer.bn = nn.Identity(), False
        return self

    def load_weights(self, path: str | Path) -> None:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read darknet weights {path}: {exc.strerror}") from exc
        if len(data) < 20:
            raise ModelError(f"{path}: too short to be darknet weights ({len(data)} bytes)")
        major, minor, _rev = np.frombuffer(data[:12], dtype=np.int32)
        header = 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16
        buf = np.frombuffer(data[header:], dtype=np.float32)
        offset = 0
        try:
            for layer in self.layers:
                if isinstance(layer, ConvBlock):
                    offset = layer.load(buf, offset)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        if offset != buf.size:
            raise ModelError(
                f"{path}: {buf.size - offset} weights left over after the last layer; the weights are for another cfg"
            )

    def load_head(self, path: str | Path) -> tuple[str, ...]:
        """Overlay fine-tuned layers (``clockwork.training.train_detector --export``) on this model: the file holds the
        state of every layer from ``train_from`` on; the layers before stay as loaded. Returns the labels the
        head was trained to find (files without the field are clock heads). Raises :class:`ModelError` naming
        what does not fit."""
        path = Path(path)
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise ModelError(f"cannot read detector head {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(ck, dict) or "layers" not in ck or "train_from" not in ck:
            raise ModelError(
                f"{path}: not a detector head file (python -m clockwork.training.train_detector --export writes one)"
            )
        start = int(ck["train_from"])
        state = {f"layers.{k}": v for k, v in ck["layers"].items()}
        own = {k: v for k, v in self.state_dict().items() if int(k.split(".")[1]) >= start}
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ModelError(
                f"{path}: its layers do not fit this model ({len(state)} tensors from layer {start}, "
                f"the model has {len(own)}); it was trained for another cfg, or after the batch norms were folded"
            )
        self.load_state_dict(state, strict=False)
        return tuple(ck.get("labels", ("clock",)))

    def forward(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Boxes ``[batch, boxes, 5 + classes]`` decoded as in the module's docstring; ``raw``: each YOLO
        layer's logits (a list, for training)."""
        outputs: list[torch.Tensor | None] = []
        heads = []
        keep = {r for refs in self.refs for r in refs}
        for i, (kind, layer) in enumerate(zip(self.kinds, self.layers, strict=True)):
            if kind == "route":
                groups, gid = self.groups[i]
                parts = []
                for r in self.refs[i]:
                    t = outputs[r]
                    if groups > 1:
                        t = t.chunk(groups, dim=1)[gid]
                    parts.append(t)
                x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            elif kind == "shortcut":
                x = layer(x + outputs[self.refs[i][0]])
            elif kind == "yolo":
                heads.append(layer(x, raw))
            else:
                x = layer(x)
            outputs.append(x if (i in keep) else None)
        return heads if raw else torch.cat(heads, dim=1)
