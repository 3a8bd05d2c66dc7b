"""The darknet loader against an independent implementation: OpenCV 4.x's darknet importer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clockwork.detect.boxes import letterbox
from clockwork.detect.darknet import Darknet, parse_cfg
from clockwork.detect.model_store import default_model_paths
from clockwork.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
OPENCV4 = REPO / ".venv" / "opencv4"
REFERENCE = Path(__file__).with_name("opencv4_reference.py")


def opencv4(cfg: Path, weights: Path, blob: np.ndarray, tmp_path: Path) -> list[np.ndarray]:
    """Outputs of OpenCV 4.x's own darknet importer for ``blob``, run in a subprocess."""
    if not (OPENCV4 / "cv2").is_dir():
        pytest.fail(f"OpenCV 4.x reference missing at {OPENCV4}; run `make setup`")
    np.save(tmp_path / "blob.npy", blob)
    env = dict(os.environ, PYTHONPATH=str(OPENCV4))
    subprocess.run(
        [sys.executable, str(REFERENCE), str(cfg), str(weights), str(tmp_path / "blob.npy"), str(tmp_path / "ref.npz")],
        env=env,
        check=True,
    )
    ref = np.load(tmp_path / "ref.npz")
    assert str(ref["version"]).startswith("4.")
    return [ref[f"out{i}"] for i in range(len(ref.files) - 1)]


def photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled photographs, plus one with a drawn clock pasted in."""
    from skimage import data

    from clockwork.samples import draw_clock

    rocket = data.rocket().copy()
    clock = draw_clock(180)
    alpha = clock[..., 3:4] / 255.0
    region = rocket[40:220, 60:240]
    rocket[40:220, 60:240] = (clock[..., :3] * alpha + region * (1 - alpha)).astype(np.uint8)
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket+clock": rocket}


def blob_of(images: list[np.ndarray], size: int = 416) -> np.ndarray:
    return np.stack([letterbox(im, size)[0] for im in images]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0


@pytest.fixture(scope="module")
def default_model():
    paths = default_model_paths()
    return paths, Darknet.from_files(paths.cfg, paths.weights)


def test_default_model_matches_opencv4_on_real_photographs(default_model, tmp_path):
    paths, model = default_model
    images = list(photos().values())
    blob = blob_of(images)
    ref_outs = opencv4(paths.cfg, paths.weights, blob, tmp_path)
    with torch.no_grad():
        ours = model(torch.from_numpy(blob)).numpy()
    # OpenCV stacks the batch's boxes per output layer: [N*boxes_layer, 85] for each layer.
    per_layer = [o.reshape(len(images), -1, o.shape[-1]) for o in ref_outs]
    ref = np.concatenate(per_layer, axis=1)
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours[..., :5], ref[..., :5], atol=2e-4, rtol=1e-4)
    # OpenCV reports objectness x class probability and zeroes those under 0.24.
    scores = ours[..., 5:] * ours[..., 4:5]
    kept = ref[..., 5:] > 0
    np.testing.assert_allclose(scores[kept], ref[..., 5:][kept], atol=2e-4)
    assert not np.any(scores[~kept] > 0.2401)


def test_detections_agree_with_opencv4_after_nms(default_model, coco_detector, tmp_path):
    detector = coco_detector
    """Boxes and scores, after thresholding and NMS, agree on real photographs."""
    import cv2

    paths, _ = default_model
    images = list(photos().values())
    blob = blob_of(images)
    ref_outs = opencv4(paths.cfg, paths.weights, blob, tmp_path)
    ref = np.concatenate([o.reshape(len(images), -1, o.shape[-1]) for o in ref_outs], axis=1)
    ours = detector.detect(images, min_score=0.25, labels=None)
    total = 0
    for i, image in enumerate(images):
        scores = ref[i, :, 5:]
        cls = scores.argmax(1)
        best = scores.max(1)
        sel = best >= 0.25
        boxes = ref[i, sel, :4] * 416
        tl = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 2], boxes[:, 3]], 1)
        expected = []
        for c in np.unique(cls[sel]):
            idx = np.where(cls[sel] == c)[0]
            keep = cv2.dnn.NMSBoxes(tl[idx].tolist(), best[sel][idx].tolist(), 0.25, 0.45)
            for k in np.array(keep).reshape(-1):
                expected.append((int(c), float(best[sel][idx][k]), tl[idx][k]))
        got = ours[i]
        assert len(got) == len(expected), (i, got, expected)
        h, w = image.shape[:2]
        scale = min(416 / w, 416 / h)
        pad_x, pad_y = (416 - round(w * scale)) // 2, (416 - round(h * scale)) // 2
        for c, s, (x, y, _w, _h) in expected:
            match = [d for d in got if d.label == detector.labels[c] and abs(d.score - s) < 1e-3]
            assert match, (detector.labels[c], s, got)
            d = match[0]
            assert abs(d.x - max(0.0, (x - pad_x) / scale)) < 1.0
            assert abs(d.y - max(0.0, (y - pad_y) / scale)) < 1.0
        total += len(got)
    assert total >= 2, "the photographs should yield some detections to compare"


TINY_V4_LIKE = """
[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[route]
layers=-1
groups=2
group_id=1
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[shortcut]
from=-2
activation=linear
[route]
layers=-1,-4
[maxpool]
size=2
stride=2
[maxpool]
size=2
stride=1
[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear
[yolo]
mask=3,4,5
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
num=6
scale_x_y=1.05
[route]
layers=-3
[upsample]
stride=2
[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear
[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
num=6
scale_x_y=1.05
"""


def test_yolov4_tiny_style_layers_match_opencv4(tmp_path):
    """Grouped route, shortcut, stride-1 maxpool, upsample and scale_x_y, with random weights."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_V4_LIKE)
    model = Darknet(parse_cfg(cfg))
    rng = np.random.default_rng(0)
    n = 0
    for layer in model.layers:
        if hasattr(layer, "conv"):
            n += layer.conv.weight.numel() + layer.filters * (4 if layer.bn else 1)
    values = rng.normal(0, 0.2, n).astype(np.float32)
    # running variances must be positive: fill them after generation
    weights = tmp_path / "tiny.weights"
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    off, parts = 0, []
    for layer in model.layers:
        if hasattr(layer, "conv"):
            k = layer.filters
            if layer.bn:
                parts += [values[off : off + 3 * k], np.abs(values[off + 3 * k : off + 4 * k]) + 0.5]
                off += 4 * k
            else:
                parts.append(values[off : off + k])
                off += k
            m = layer.conv.weight.numel()
            parts.append(values[off : off + m])
            off += m
    weights.write_bytes(header + np.concatenate(parts).tobytes())
    model.load_weights(weights)
    model.eval()
    blob = rng.random((2, 3, 64, 64), dtype=np.float32)
    ref_outs = opencv4(cfg, weights, blob, tmp_path)
    ref = np.concatenate([o.reshape(2, -1, o.shape[-1]) for o in ref_outs], axis=1)
    with torch.no_grad():
        ours = model(torch.from_numpy(blob)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours[..., :5], ref[..., :5], atol=1e-4, rtol=1e-4)


def test_unsupported_layer_names_the_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\n[reorg]\nstride=2\n")
    with pytest.raises(ModelError, match=r"bad.cfg:6: unsupported layer \[reorg\]"):
        parse_cfg(cfg)


def test_weights_for_another_cfg_are_refused(tmp_path, default_model):
    paths, _ = default_model
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_V4_LIKE)
    with pytest.raises(ModelError, match="left over"):
        Darknet.from_files(cfg, paths.weights)
    short = tmp_path / "short.weights"
    short.write_bytes(paths.weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="shorter than the cfg needs"):
        Darknet.from_files(paths.cfg, short)


def test_folding_batch_norm_into_the_convolutions_keeps_the_outputs(default_model):
    paths, model = default_model
    x = torch.rand(2, 3, model.width, model.width)
    with torch.inference_mode():
        before = model(x)
        fused = Darknet.from_files(paths.cfg, paths.weights).fuse()
        after = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)


def test_maxpool_pads_only_where_a_window_reaches_the_padding():
    from clockwork.detect.darknet import MaxPool

    x = torch.randn(1, 2, 26, 26)
    # size 2, stride 2 on even sides: the bottom/right pad is never reached, so the output is plain pooling
    assert torch.equal(MaxPool(2, 2)(x), torch.nn.functional.max_pool2d(x, 2, 2))
    # size 2, stride 1 (YOLOv3-tiny at 13x13): the pad is needed and the size is kept
    odd = torch.randn(1, 2, 13, 13)
    out = MaxPool(2, 1)(odd)
    assert out.shape[-2:] == (13, 13)
    assert torch.equal(out[..., -1, -1], odd[..., -1, -1])
    # an odd side with stride 2 does reach the pad: 13 -> 7, as darknet computes it
    assert MaxPool(2, 2)(odd).shape[-2:] == (7, 7)
