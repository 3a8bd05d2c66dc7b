"""Boxes drawn on every frame of a clock's segment, carried along its track between the frames a scan examined."""

from __future__ import annotations

import pytest

from clockwork.remix.annotate import TrackBoxes, annotate_video
from clockwork.timeline.pipeline import detect_video


@pytest.fixture(scope="module")
def moving(samples_dir):
    """The moving clock at the defaults: a scan, whose coarse frames are half a second apart mid-segment."""
    video = samples_dir / "clock_moving_360p25.mp4"
    return video, detect_video(video)


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_a_moving_clock_is_one_track_across_the_coarse_steps(moving):
    _, result = moving
    first = result.segments[0]
    tracks = {
        d.track for f in result.frame_data if first.start_frame <= f.frame_no <= first.end_frame for d in f.detections
    }
    assert len(tracks) == 1, tracks
    examined = [f.frame_no for f in result.frame_data if first.start_frame <= f.frame_no <= first.end_frame]
    assert max(b - a for a, b in zip(examined, examined[1:], strict=False)) >= 10  # the scan skipped frames there


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_a_frame_between_two_examined_ones_has_its_box_between_theirs(moving):
    _, result = moving
    first = result.segments[0]
    seen = [f for f in result.frame_data if first.start_frame <= f.frame_no <= first.end_frame]
    a, b = max(zip(seen, seen[1:], strict=False), key=lambda p: p[1].frame_no - p[0].frame_no)
    t = (a.timestamp_s + b.timestamp_s) / 2
    boxes = TrackBoxes(result).at(t)
    assert len(boxes) == 1
    lo, hi = sorted((a.detections[0].x, b.detections[0].x))
    assert lo < boxes[0].x < hi  # the clock moves right; its box is carried with it
    assert TrackBoxes(result).at(result.duration_s - 0.5) == []  # no clock there: no box


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_annotate_draws_a_box_on_every_frame_of_the_segment(moving, tmp_path):
    video, result = moving
    annotate_video(video, result, tmp_path / "frames")
    drawn = {int(p.stem.split("_")[1]) for p in (tmp_path / "frames").glob("frame_*.jpg")}
    for seg in result.segments:
        inside = set(range(seg.start_frame, seg.end_frame + 1))
        assert inside <= drawn, sorted(inside - drawn)
    examined = {f.frame_no for f in result.frame_data}
    assert len(drawn) > 3 * len(examined & drawn) // 2  # most drawn frames were not examined
