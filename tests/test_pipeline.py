"""detect_video on the sample library against its ground truth."""

import json

import pytest

from clockwork import detect_video
from clockwork.errors import VideoNotFoundError

TOLERANCE_S = 0.5


@pytest.fixture(scope="module")
def results(samples_dir, manifest, detector):
    """The whole library at the default settings (every view, a scan), as a user gets it."""
    return {name: detect_video(samples_dir / name, detector=detector) for name in manifest["files"]}


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_every_ground_truth_interval_found(results, manifest):
    for name, entry in manifest["files"].items():
        segs = [s for s in results[name].segments if s.label == "clock"]
        truth = entry["clock_intervals"]
        assert len(segs) == len(truth), (name, segs, truth)
        for seg, (start, end) in zip(segs, truth, strict=True):
            assert abs(seg.start_s - start) <= TOLERANCE_S and abs(seg.end_s - end) <= TOLERANCE_S, (
                name,
                seg,
                start,
                end,
            )


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_distractors_have_no_clock(results):
    for name, result in results.items():
        if name.startswith("distractor"):
            assert not result.has_clock and result.segments == [] and result.clock_frames == 0


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_result_json_contract(results, manifest):
    doc = json.loads(json.dumps(results["clock_moving_360p25.mp4"].to_json()))
    for key in (
        "video_file",
        "fps",
        "has_clock",
        "clock_frames",
        "frame_data",
        "frames_total",
        "duration_s",
        "width",
        "height",
        "model",
        "segments",
    ):
        assert key in doc
    assert doc["video_file"] == "clock_moving_360p25.mp4" and doc["fps"] == 25 and doc["frames_total"] == 200
    assert doc["has_clock"] is True and doc["clock_frames"] == len(doc["frame_data"])
    frame = doc["frame_data"][0]
    assert set(frame) == {"frame_no", "timestamp_s", "detections"}
    assert frame["timestamp_s"] == pytest.approx(frame["frame_no"] / 25)
    det = frame["detections"][0]
    assert set(det) <= {"x", "y", "w", "h", "type", "label", "score", "track", "clock_time"} and det["type"] == "clock"
    assert any("clock_time" in d for f in doc["frame_data"] for d in f["detections"])  # read_time is on by default
    assert 0 <= det["x"] and det["x"] + det["w"] <= 640 and det["y"] + det["h"] <= 360
    assert set(doc["segments"][0]) == {
        "label",
        "start_s",
        "end_s",
        "start_frame",
        "end_frame",
        "max_score",
        "frames",
        "track",
        "clock_time",
    }
    # the default is a scan: 2 frames a second of the 8 s, and every frame of the four windows around the clocks' ends
    assert doc["views"] == ["full", "tiles"] and doc["sample_fps"] is None and doc["multiscale_fps"] == 5
    assert doc["scan"]["coarse_fps"] == 2 and doc["scan"]["frames_coarse"] == 16 and len(doc["scan"]["refined"]) == 4
    assert doc["frames_processed"] == 16 + doc["scan"]["frames_refined"] < 200
    assert doc["model"]["name"] == "yolov3-tiny+clock_head" and doc["model"]["head_sha256"]  # the default head


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_portrait_boxes_are_in_display_coordinates(results):
    r = results["clock_portrait_2997.mp4"]
    assert (r.width, r.height) == (360, 640)
    for f in r.frame_data:
        for d in f.detections:
            assert d.x + d.w <= 360 + 1 and d.y + d.h <= 640 + 1


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_sampled_detection(samples_dir, detector):
    r = detect_video(samples_dir / "clock_static_720p30.mp4", sample_fps=5, detector=detector)
    assert r.frames_processed == 30 and r.frames_total == 180
    assert len(r.segments) == 1 and abs(r.segments[0].start_s - 1.0) <= TOLERANCE_S


@pytest.mark.slow
def test_every_frame_mode_with_the_views_at_a_lower_rate_keeps_the_segments(samples_dir, manifest, detector):
    """Every-frame mode shows the zoomed-out view and the tiles on 5 frames a second (every 12th frame at 60 fps), the
    full view on all; its segments match the ground truth and, within one stride, those of every view on every frame."""
    name = "clock_60fps_480p.mp4"
    fast = detect_video(samples_dir / name, detector=detector, sample_fps=None)
    every = detect_video(samples_dir / name, detector=detector, sample_fps=None, multiscale_fps=None)
    assert fast.frames_processed == every.frames_processed == fast.frames_total
    doc = fast.to_json()
    assert doc["multiscale_fps"] == 5 and every.to_json()["multiscale_fps"] is None
    truth = manifest["files"][name]["clock_intervals"]
    assert len(fast.segments) == len(every.segments) == len(truth)
    for a, b, (start, end) in zip(fast.segments, every.segments, truth, strict=True):
        assert abs(a.start_s - start) <= TOLERANCE_S and abs(a.end_s - end) <= TOLERANCE_S
        assert abs(a.start_s - b.start_s) <= 12 / 60 + 1e-6 and abs(a.end_s - b.end_s) <= 12 / 60 + 1e-6


def test_a_bad_multiscale_rate_fails_before_work(samples_dir, detector):
    with pytest.raises(ValueError, match=r"Invalid multiscale_fps \(-1"):
        detect_video(samples_dir / "clock_60fps_480p.mp4", detector=detector, sample_fps=None, multiscale_fps=-1.0)


def test_missing_video_fails_before_work(tmp_path, detector):
    with pytest.raises(VideoNotFoundError):
        detect_video(tmp_path / "missing.mp4", detector=detector)


def test_a_clock_read_and_never_readable_makes_no_segment():
    """Three clocks in turn: one read unreadable at every reading (an emblem), one read readable once of three, one
    never
    read. The first loses its boxes and its segment; the others keep theirs. Without readings nothing is dropped."""
    from clockwork.timeline.pipeline import ResultBuilder
    from clockwork.timeline.result import Detection
    from clockwork.timeread.clocktime import ClockTime
    from clockwork.video.decode import VideoInfo

    def build(read: bool):
        b = ResultBuilder(
            VideoInfo("three.mp4", 640, 360, 10.0, 90, 9.0, "h264", 0, False),
            model={},
            labels=["clock"],
            min_score=0.5,
            sample_fps=None,
        )
        for i in range(90):
            x, readable = [(10, 0.01), (250, 0.9 if i == 45 else 0.2), (500, None)][i // 30]
            t = ClockTime(600, 0.9, readable) if read and readable is not None and i % 5 == 0 else None
            b.add_frame(i, i / 10, [Detection(x, 50, 100, 100, "clock", 0.9, clock_time=t)] if i % 30 < 20 else [])
        return b.build()

    result = build(read=True)
    assert [(s.start_s, s.end_s) for s in result.segments] == [(3.0, 5.0), (6.0, 8.0)]
    assert {d.x for f in result.frame_data for d in f.detections} == {250, 500}
    assert result.segments[0].clock_time.minutes == 600
    unread = build(read=False)
    assert [(s.start_s, s.end_s) for s in unread.segments] == [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0)]


def test_tracks_follow_each_clock_and_segments_name_theirs():
    from clockwork.timeline.pipeline import ResultBuilder
    from clockwork.timeline.result import Detection
    from clockwork.video.decode import VideoInfo

    info = VideoInfo("two.mp4", 640, 360, 10.0, 30, 3.0, "h264", 0, False)
    b = ResultBuilder(info, model={}, labels=["clock"], min_score=0.5, sample_fps=None)
    for i in range(30):
        left = Detection(10 + i, 10, 100, 100, "clock", 0.9)  # drifts right
        right = Detection(500, 200 - i, 80, 80, "clock", 0.95 if i < 20 else 0.4)  # drifts up, weak after frame 19
        b.add_frame(i, i / 10, [right, left] if i % 2 else [left, right])
    result = b.build()
    tracks = {d.track for f in result.frame_data for d in f.detections if d.x < 300}
    others = {d.track for f in result.frame_data for d in f.detections if d.x >= 300}
    assert len(tracks) == 1 and len(others) == 1 and tracks != others
    assert all(d.score >= 0.5 for f in result.frame_data for d in f.detections)  # weak ones are not in frame_data
    [seg] = result.segments  # both clocks overlap in time: one clock segment, following the longer track
    assert seg.track == next(iter(tracks)) and seg.end_s == 3.0
    doc = result.to_json()
    assert (
        doc["segments"][0]["track"] == seg.track and doc["frame_data"][0]["detections"][0]["track"] in tracks | others
    )


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_a_clock_found_only_in_the_scans_windows_is_read_and_checked(tmp_path, detector):
    """Game of Life, seed 2 (bench/life.py renders the same clip): the clock head fires on it in the scan's refined
    frames only, above min_score there and below it in the coarse frames. The windows read the dials too, so the
    track is read, found unreadable and dropped; unread (nothing checked) it makes a segment."""
    from bench.life import render

    clip = render(tmp_path / "life-2.mp4", 2)
    unread = detect_video(clip, detector=detector, read_time=False)
    checked = detect_video(clip, detector=detector)
    assert len(unread.segments) == 1 and checked.segments == []
