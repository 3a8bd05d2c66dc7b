"""Property tests for box conversion, letterboxing and NMS."""

from itertools import pairwise

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.detect.boxes import (
    inside_matrix,
    iou_matrix,
    letterbox,
    letterbox_params,
    merge_contained,
    nms,
    unletterbox,
)

sizes = st.integers(min_value=16, max_value=2000)


@given(w=sizes, h=sizes, fx=st.floats(0, 1), fy=st.floats(0, 1), fw=st.floats(0, 1), fh=st.floats(0, 1))
def test_unletterbox_inverts_letterbox(w, h, fx, fy, fw, fh):
    size = 416
    lb = letterbox_params(w, h, size)
    x, y = fx * w * 0.9, fy * h * 0.9
    bw, bh = fw * (w - x), fh * (h - y)
    # source box -> normalised network box -> back
    net = torch.tensor(
        [
            [
                (x * lb.scale + lb.pad_x) / size,
                (y * lb.scale + lb.pad_y) / size,
                bw * lb.scale / size,
                bh * lb.scale / size,
            ]
        ],
        dtype=torch.float64,
    )
    back = unletterbox(net, lb, size)[0].tolist()
    assert np.allclose(back, [x, y, bw, bh], atol=1e-6 * max(w, h) + 1e-6)


def test_letterbox_keeps_aspect_and_pads_grey():
    image = np.zeros((100, 400, 3), np.uint8)
    out, lb = letterbox(image, 416)
    assert out.shape == (416, 416, 3)
    assert lb.scale == 416 / 400 and lb.pad_x == 0 and lb.pad_y == (416 - 104) // 2
    assert (out[0] == 127).all() and (out[208] == 0).all()


boxes_st = st.lists(
    st.tuples(
        st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50), st.floats(0.01, 1), st.integers(0, 2)
    ),
    min_size=0,
    max_size=40,
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


def _merge_reference(boxes, scores, classes, keep, threshold):
    """merge_contained's rule spelled out box by box in plain Python (what it did before it ran in NumPy)."""
    b = boxes[keep]
    inside, area = inside_matrix(b, b).tolist(), (b[:, 2] * b[:, 3]).tolist()
    cls, idx, scores = classes[keep].tolist(), keep.tolist(), scores.clone()
    alive = [True] * len(idx)
    for j in sorted(range(len(idx)), key=lambda k: area[k]):
        holders = [
            i
            for i in range(len(idx))
            if i != j and alive[i] and cls[i] == cls[j] and area[i] > area[j] and inside[i][j] >= threshold
        ]
        if holders:
            i = max(holders, key=lambda k: area[k])
            scores[idx[i]] = max(scores[idx[i]], scores[idx[j]])
            alive[j] = False
    kept = [k for k, a in zip(idx, alive, strict=True) if a]
    return sorted(kept, key=lambda k: -float(scores[k])), scores


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 40))
def test_merge_contained_follows_the_rule_box_by_box(seed, n):
    """Nested boxes of two classes (clocks inside clocks, dials inside them): the vectorised merge keeps the boxes
    and scores that the rule applied one box at a time keeps."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(2, 120, (n, 2))
    nested = rng.random(n) < 0.5  # half the boxes inside an earlier one
    for k in range(1, n):
        if nested[k]:
            p = rng.integers(0, k)
            wh[k] = wh[p] * rng.uniform(0.3, 0.95, 2)
            xy[k] = xy[p] + (wh[p] - wh[k]) * rng.uniform(-0.1, 1.1, 2)
    boxes = torch.tensor(np.hstack([xy, wh]), dtype=torch.float64)
    scores = torch.tensor(rng.uniform(0.1, 1.0, n), dtype=torch.float32)
    classes = torch.tensor(rng.integers(0, 2, n))
    keep = torch.tensor(sorted(rng.choice(n, size=int(rng.integers(2, n + 1)), replace=False).tolist()))
    got_keep, got_scores = merge_contained(boxes, scores, classes, keep, 0.8)
    want_keep, want_scores = _merge_reference(boxes, scores, classes, keep, 0.8)
    assert sorted(got_keep.tolist()) == sorted(want_keep)
    assert torch.equal(got_scores, want_scores)
    assert got_scores[got_keep].tolist() == sorted(got_scores[got_keep].tolist(), reverse=True)
