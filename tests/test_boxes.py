"""Property tests for box conversion, letterboxing and NMS."""

from itertools import pairwise

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.boxes import iou_matrix, letterbox, letterbox_params, nms, unletterbox

sizes = st.integers(min_value=16, max_value=2000)


@given(w=sizes, h=sizes, fx=st.floats(0, 1), fy=st.floats(0, 1), fw=st.floats(0, 1), fh=st.floats(0, 1))
def test_unletterbox_inverts_letterbox(w, h, fx, fy, fw, fh):
    size = 416
    lb = letterbox_params(w, h, size)
    x, y = fx * w * 0.9, fy * h * 0.9
    bw, bh = fw * (w - x), fh * (h - y)
    # source box -> normalised network box -> back
    net = torch.tensor([[(x * lb.scale + lb.pad_x) / size, (y * lb.scale + lb.pad_y) / size,
                         bw * lb.scale / size, bh * lb.scale / size]], dtype=torch.float64)
    back = unletterbox(net, lb, size)[0].tolist()
    assert np.allclose(back, [x, y, bw, bh], atol=1e-6 * max(w, h) + 1e-6)


def test_letterbox_keeps_aspect_and_pads_grey():
    image = np.zeros((100, 400, 3), np.uint8)
    out, lb = letterbox(image, 416)
    assert out.shape == (416, 416, 3)
    assert lb.scale == 416 / 400 and lb.pad_x == 0 and lb.pad_y == (416 - 104) // 2
    assert (out[0] == 127).all() and (out[208] == 0).all()


boxes_st = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50), st.floats(0.01, 1), st.integers(0, 2)),
    min_size=0, max_size=40,
)


@settings(max_examples=200)
@given(items=boxes_st, thr=st.floats(0.1, 0.9))
def test_nms_properties(items, thr):
    if not items:
        assert nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), thr).numel() == 0
        return
    boxes = torch.tensor([i[:4] for i in items], dtype=torch.float64)
    scores = torch.tensor([i[4] for i in items], dtype=torch.float64)
    classes = torch.tensor([i[5] for i in items])
    keep = nms(boxes, scores, classes, thr).tolist()
    assert len(set(keep)) == len(keep)
    assert all(scores[a] >= scores[b] for a, b in pairwise(keep))
    iou = iou_matrix(boxes, boxes)
    for a in keep:  # kept boxes of one class never overlap more than the threshold
        for b in keep:
            if a != b and classes[a] == classes[b]:
                assert iou[a, b] <= thr + 1e-9
    for j in set(range(len(items))) - set(keep):  # every dropped box is covered by a kept one
        assert any(classes[k] == classes[j] and iou[k, j] > thr and scores[k] >= scores[j] for k in keep)
