"""The clock reader: the pinned weights, reading clean dials, saying when a dial cannot be read, fusion."""

import numpy as np
import pytest

from clockwork.errors import ModelError
from clockwork.samples import draw_clock
from clockwork.timeread.clocktime import ClockTime, circular_error, fuse, hhmm_to_minutes
from clockwork.timeread.reader import INPUT, ClockReader, crop_box


@pytest.fixture(scope="module")
def reader():
    return ClockReader()


def scene(hour, minute, size=220):
    frame = np.full((400, 500, 3), 90, np.uint8)
    face = draw_clock(size, hour, minute)
    a = face[..., 3:4] / 255.0
    frame[60 : 60 + size, 120 : 120 + size] = (
        face[..., :3] * a + frame[60 : 60 + size, 120 : 120 + size] * (1 - a)
    ).astype(np.uint8)
    return frame, (120 + size * 0.04, 60 + size * 0.04, size * 0.92, size * 0.92)


@pytest.mark.parametrize("hour,minute", [(10, 10), (10, 12), (10, 15), (12, 0), (4, 50)])
def test_reads_the_sample_librarys_clocks(reader, hour, minute):
    frame, box = scene(hour, minute)
    [reading] = reader.read_boxes(frame, [box])
    assert reading.readable > 0.5 and circular_error(reading.minutes, (hour % 12) * 60 + minute) <= 1, reading


def test_a_dial_that_cannot_be_read_says_so(reader):
    blank = np.full((400, 500, 3), 90, np.uint8)
    blank[100:300, 150:350] = 200  # a grey card, no dial
    blurred, box = scene(10, 10)
    import cv2

    blurred = cv2.GaussianBlur(blurred, (0, 0), 12)
    readings = reader.read_boxes(blank, [(150, 100, 200, 200)]) + reader.read_boxes(blurred, [box])
    assert all(r.readable < 0.5 for r in readings), readings


def test_crop_is_square_around_the_box_and_repeats_edges():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :100] = 255
    crop = crop_box(frame, (90, 10, 20, 80))
    assert crop.shape == (INPUT, INPUT, 3)
    assert crop[:, 0].mean() == 255 and crop[:, -1].mean() == 0  # left white, right black, edges repeated


@pytest.mark.parametrize(
    "box",
    [
        (200, 120, 60, 60),
        (3, 5, 40, 30),
        (470, 370, 60, 50),
        (-30, 150, 80, 80),
        (100.4, 200.7, 13.3, 17.9),
        (0, 0, 500, 400),
        (480, 10, 300, 300),
    ],
)
def test_a_frame_on_the_gpu_crops_like_one_on_the_host(box):
    """A frame given as a tensor (a GPU frame; here a CPU tensor) copies only the region the crop samples: the crop
    is the same as the whole frame's, inside the image, at its edges and past them."""
    import torch

    rng = np.random.default_rng(0)
    frame = cv2_blur(rng.integers(0, 256, (400, 500, 3), dtype=np.uint8))
    whole, region = crop_box(frame, box), crop_box(torch.from_numpy(frame), box)
    assert region.shape == whole.shape == (INPUT, INPUT, 3)
    assert np.abs(whole.astype(int) - region.astype(int)).max() <= 1


def cv2_blur(image):
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 2)


def test_weights_are_pinned(tmp_path, monkeypatch):
    from clockwork.timeread import reader as module

    other = tmp_path / "other.pt"
    other.write_bytes(b"not weights")
    with pytest.raises(ModelError, match="not clock reader weights"):
        ClockReader(other)
    with pytest.raises(ModelError, match="not found"):
        ClockReader(tmp_path / "missing.pt")
    tampered = tmp_path / "clock_reader.pt"
    tampered.write_bytes(module.WEIGHTS.read_bytes() + b"\0")
    monkeypatch.setattr(module, "WEIGHTS", tampered)
    with pytest.raises(ModelError, match="is not the pinned"):
        ClockReader()


def test_fusion_allows_for_the_hand_moving_and_wraps_at_twelve():
    moving = [(0.0, ClockTime(610, 0.9)), (60.0, ClockTime(611, 0.9)), (120.0, ClockTime(612, 0.8))]
    assert fuse(moving).minutes == 610  # the time at the first reading
    around_twelve = [(0.0, ClockTime(719, 0.9)), (1.0, ClockTime(0, 0.9)), (2.0, ClockTime(719, 0.9))]
    assert fuse(around_twelve).minutes in (719, 0)
    assert fuse([(0.0, ClockTime(100, 0.9, readable=0.1))]) is None
    assert hhmm_to_minutes("22:10") == 610 and ClockTime(0, 1.0).hhmm == "12:00"
    with pytest.raises(ValueError, match="Supported values look like 10:10"):
        hhmm_to_minutes("25:99")


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_detect_reads_each_segment_once(samples_dir, detector, reader):
    from clockwork.timeline.pipeline import detect_video

    result = detect_video(
        samples_dir / "clock_static_720p30.mp4", detector=detector, read_time=True, clock_reader=reader
    )
    [seg] = result.segments
    assert seg.clock_time is not None and circular_error(seg.clock_time.minutes, 610) <= 1
    read = [d for f in result.frame_data for d in f.detections if d.clock_time is not None]
    assert 0 < len(read) <= 8  # 2 readings a second over about 3 s, not every frame
    doc = result.to_json()
    assert doc["segments"][0]["clock_time"]["hhmm"] in ("10:09", "10:10", "10:11")
