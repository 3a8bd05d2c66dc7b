import numpy as np
import pytest

from clockwork.samples import draw_clock
from clockwork.training.clockface import ClockStyle, composite, draw_clock_face
from clockwork.video.frames import FrameBatch


def frame_with_clock(size=200, bg=(90, 120, 150)):
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:] = bg
    clock = draw_clock(size, 2, 45)
    a = clock[..., 3:4] / 255.0
    region = frame[60 : 60 + size, 300 : 300 + size]
    frame[60 : 60 + size, 300 : 300 + size] = (clock[..., :3] * a + region * (1 - a)).astype(np.uint8)
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
    assert [[(d.label, round(d.score, 3)) for d in x] for x in batched] == [
        [(d.label, round(d.score, 3)) for d in x] for x in single
    ]


def test_label_filter_and_per_class_threshold(coco_detector):
    detector = coco_detector
    frame = frame_with_clock()
    assert detector.detect([frame], labels=["person"], min_score=0.1)[0] == []
    assert detector.detect([frame], min_score={"clock": 0.999, "*": 0.5}, labels=["clock"])[0] == []
    assert detector.detect([frame], min_score={"clock": 0.5}, labels=["clock"])[0]


def test_bad_arguments_name_the_value(detector):
    with pytest.raises(ValueError, match=r"Unknown label 'clok' \(did you mean 'clock'\?\)"):
        detector.detect([frame_with_clock()], labels=["clok"])
    with pytest.raises(ValueError, match=r"Invalid min_score \(1.5\)"):
        detector.detect([frame_with_clock()], min_score=1.5)


def test_explicit_cuda_without_gpu_is_an_error():
    import torch

    from clockwork.detect.detector import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device(None).type == "cpu"


# Two eval-family styles, written out so the test does not depend on a random stream.
PLAIN_ROUND = ClockStyle(
    shape="round",
    face=(208, 203, 208),
    ink=(20, 50, 30),
    rim=(161, 73, 250),
    rim_width=0.058,
    markers="arabic",
    font=3,
    hands="line",
    hand_color=(20, 50, 30),
    hour_len=0.44,
    minute_len=0.79,
    hand_width=0.069,
)
ROMAN_OCTAGON = ClockStyle(
    shape="octagon",
    face=(255, 249, 247),
    ink=(120, 20, 20),
    rim=(173, 102, 53),
    rim_width=0.076,
    double_rim=True,
    markers="roman",
    font=5,
    minute_ticks=False,
    hands="arrow",
    hand_color=(120, 20, 20),
    hour_len=0.44,
    minute_len=0.83,
    hand_width=0.03,
)


def scene(style, size, x) -> FrameBatch:
    frame = composite(
        np.full((720, 1280, 3), 110, np.uint8), draw_clock_face(style, 10, 10, None, size), x, (720 - size) // 2
    )
    return FrameBatch([0], [0.0], frame[None])


def test_zoomed_out_view_finds_an_extreme_close_up(coco_detector):
    """COCO's heads need the zoomed-out view for a frame-filling clock (the clock head trained on such clocks)."""
    detector = coco_detector
    batch = scene(PLAIN_ROUND, 1000, 140)  # the dial overflows the frame top and bottom
    full = detector.detect_batch(batch, views=("full",), min_score=0.1)[0].detections
    views = detector.detect_batch(batch, views=("full", "zoomout", "tiles"), min_score=0.1)[0].detections
    assert max((d.score for d in full), default=0) < 0.5
    assert len(views) == 1 and views[0].score > 0.9 and views[0].h == 720 and views[0].w > 800


def test_tiles_find_a_small_clock_and_map_it_back(coco_detector):
    detector = coco_detector
    batch = scene(ROMAN_OCTAGON, 110, 940)
    assert detector.detect_batch(batch, views=("full",), min_score=0.1)[0].detections == []
    found = detector.detect_batch(batch, views=("full", "zoomout", "tiles"), min_score=0.5)[0].detections
    assert len(found) == 1
    d = found[0]  # in source pixels, inside where the clock was drawn
    assert 930 <= d.x and d.x + d.w <= 1060 and 300 <= d.y and d.y + d.h <= 420


def test_views_are_validated(detector):
    with pytest.raises(ValueError, match="Supported values are one or more of full, zoomout, tiles"):
        detector.detect_batch(scene(PLAIN_ROUND, 300, 100), views=("full", "zoom"))


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_the_gpu_letterbox_path_agrees_with_the_cpu_one(samples_dir, detector):
    """NVDEC frames are letterboxed with torch (crop, interpolate, pad) and CPU frames with OpenCV. The torch
    code runs on CPU tensors too, so the two preprocessings of every view are compared here, without a GPU
    (tests/test_gpu.py compares the whole paths on a card)."""
    import torch

    from clockwork.video.frames import FrameReader

    with FrameReader(samples_dir / "clock_60fps_480p.mp4", sample_fps=5) as reader:
        for batch in reader:
            on_host = detector.detect_batch(batch, min_score=0.3)
            as_torch = detector.detect_batch(
                FrameBatch(batch.indexes, batch.timestamps, torch.from_numpy(batch.data)), min_score=0.3
            )
            for a, b in zip(on_host, as_torch, strict=True):
                confident_a = [d for d in a.detections if d.score >= 0.6]
                confident_b = [d for d in b.detections if d.score >= 0.6]
                assert len(confident_a) == len(confident_b), (a, b)
                for u, v in zip(confident_a, confident_b, strict=True):
                    assert (
                        max(abs(u.x - v.x), abs(u.y - v.y), abs(u.w - v.w), abs(u.h - v.h)) <= 8
                        and abs(u.score - v.score) < 0.05
                    )


def test_with_a_stride_the_views_after_the_first_see_only_every_stride_th_frame(coco_detector):
    """Every-frame passes show the zoomed-out view and the tiles on every ``stride``-th frame (frame numbers that are
    multiples of it), the full view on all: a small clock only tiles find is found on those frames alone, and there
    exactly as without a stride; on the host and on torch tensors (the NVDEC path's letterbox) alike. COCO's heads: the
    clock head finds this clock in the full view too."""
    import torch

    detector = coco_detector
    from clockwork.video.views import view_stride

    one = scene(ROMAN_OCTAGON, 110, 940)
    frames = np.repeat(one.data, 6, axis=0)
    batch = FrameBatch(list(range(3, 9)), [i / 25 for i in range(3, 9)], frames)  # frames 3..8: 5 is the stride's
    stride = view_stride(25.0, None, 5.0)
    assert stride == 5
    prepared = detector.prepare(batch, ("full", "zoomout", "tiles"), stride)
    assert len(prepared) == 6 + 5  # six full views, then the zoomed-out view and four tiles of frame 5
    assert prepared.frame_of[6:] == [2] * 5
    every = detector.detect_batch(batch, min_score=0.5)[0].detections
    for data in (frames, torch.from_numpy(frames)):
        found = detector.detect_batch(FrameBatch(batch.indexes, batch.timestamps, data), min_score=0.5, stride=stride)
        assert [bool(f.detections) for f in found] == [False, False, True, False, False, False]
        assert [(round(d.x), round(d.y), round(d.w), round(d.h)) for d in found[2].detections] == [
            (round(d.x), round(d.y), round(d.w), round(d.h)) for d in every
        ]


def test_view_stride_follows_the_mode_and_refuses_a_bad_rate():
    from clockwork.video.views import view_stride

    assert (
        view_stride(25.0, None, 5.0) == 5 and view_stride(30.0, None, 5.0) == 6 and view_stride(29.97, None, 5.0) == 6
    )
    assert view_stride(25.0, 5.0, 5.0) == 1  # sampled mode: every sampled frame gets every view
    assert view_stride(25.0, None, None) == 1 and view_stride(25.0, None, 0) == 1  # every view on every frame
    assert view_stride(4.0, None, 5.0) == 1  # a slow video: every frame is already within the rate
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"Invalid multiscale_fps"):
            view_stride(25.0, None, bad)
