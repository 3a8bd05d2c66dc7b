import numpy as np
import pytest

from clockwork.samples import draw_clock


def frame_with_clock(size=200, bg=(90, 120, 150)):
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:] = bg
    clock = draw_clock(size, 2, 45)
    a = clock[..., 3:4] / 255.0
    region = frame[60:60 + size, 300:300 + size]
    frame[60:60 + size, 300:300 + size] = (clock[..., :3] * a + region * (1 - a)).astype(np.uint8)
    return frame


def test_drawn_clock_is_a_clock_above_0_8(detector):
    dets = detector.detect([frame_with_clock()], min_score=0.5)[0]
    assert dets and dets[0].label == "clock" and dets[0].score > 0.8
    d = dets[0]
    # x, y is the top-left corner and w, h the size, in source pixels
    assert 280 <= d.x <= 330 and 40 <= d.y <= 90 and 150 <= d.w <= 230 and 150 <= d.h <= 230


def test_batch_equals_one_by_one(detector):
    frames = [frame_with_clock(150), frame_with_clock(220, (30, 30, 30)), np.full((200, 300, 3), 128, np.uint8)]
    batched = detector.detect(frames, min_score=0.3, labels=None)
    single = [detector.detect([f], min_score=0.3, labels=None)[0] for f in frames]
    assert [[(d.label, round(d.score, 3)) for d in x] for x in batched] == [[(d.label, round(d.score, 3)) for d in x] for x in single]


def test_label_filter_and_per_class_threshold(detector):
    frame = frame_with_clock()
    assert detector.detect([frame], labels=["person"], min_score=0.1)[0] == []
    assert detector.detect([frame], min_score={"clock": 0.999, "*": 0.5}, labels=["clock"])[0] == []
    assert detector.detect([frame], min_score={"clock": 0.5}, labels=["clock"])[0]


def test_bad_arguments_name_the_value(detector):
    with pytest.raises(ValueError, match=r"Unknown label \('clok'\)"):
        detector.detect([frame_with_clock()], labels=["clok"])
    with pytest.raises(ValueError, match=r"Invalid min_score \(1.5\)"):
        detector.detect([frame_with_clock()], min_score=1.5)


def test_explicit_cuda_without_gpu_is_an_error():
    import torch

    from clockwork.detector import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device(None).type == "cpu"
