"""Coarse-to-fine scanning: the windows it refines, the mode rules, and scan against every frame on real files."""

import json
import subprocess
import sys

import pytest

from clockwork.testing import Receiver
from clockwork.timeline.pipeline import detect_video
from clockwork.timeline.scan import coarse_fps, refine_windows, resolve_mode

STEP = 0.5
FRAME = 1 / 30


def windows(states, duration=10.0):
    return refine_windows(states, step_s=STEP, duration_s=duration, frame_s=FRAME)


def test_windows_surround_each_appearance_and_disappearance():
    # a clock seen at the ticks 1.0 .. 3.0 s: it appeared after 0.5 s and went after 3.0 s
    states = [(t, "clock", 2) for t in (1.0, 1.5, 2.0, 2.5, 3.0)]
    assert windows(states) == [(0.5, pytest.approx(1.05)), (3.0, pytest.approx(3.55))]


def test_windows_follow_the_hysteresis_states_and_labels():
    # weak at 1.0, strong from 1.5: the start threshold is crossed between 1.0 and 1.5
    states = [(1.0, "clock", 1), (1.5, "clock", 2), (2.0, "clock", 2), (2.0, "person", 2)]
    got = windows(states)
    assert got[0] == (0.5, pytest.approx(2.55))  # 0.5-1.05, 1.0-1.55, 1.5-2.05 (person appears), 2.0-2.55 merged
    assert len(got) == 1


def test_windows_at_the_ends_of_the_video():
    assert windows([(0.0, "clock", 2)], duration=4.0) == [(0.0, pytest.approx(0.55))]  # gone after the first tick
    # still there at the last tick: its end lies between that tick and the end of the video
    assert windows([(3.5, "clock", 2)], duration=4.0) == [(3.0, 4.0)]
    assert windows([], duration=4.0) == []


def test_windows_use_the_tick_not_the_frame_time():
    # the coarse frame of tick 2 at 30000/1001 fps comes a little after 1.0 s
    assert windows([(1.001, "clock", 2)]) == [(0.5, pytest.approx(1.55))]


def test_coarse_rate_keeps_two_coarse_hits_of_one_clock_in_one_segment():
    assert coarse_fps(30.0) == 2.0
    assert coarse_fps(30.0, gap_s=0.1) == pytest.approx(1 / (0.1 + 1 / 30))  # raised: a step is at most gap + 1 frame
    assert coarse_fps(1.0) == 1.0  # never above the video's rate


def test_mode_rules():
    assert resolve_mode(None, None) == (True, None)
    assert resolve_mode(None, 5) == (False, 5.0)
    assert resolve_mode(None, 0) == (False, None)
    assert resolve_mode(False, None) == (False, 5.0)
    with pytest.raises(ValueError, match="sample_fps sets the rate of sampled mode"):
        resolve_mode(True, 5)


@pytest.mark.slow
def test_scan_matches_every_frame_on_the_sample_library(samples_dir, detector):
    """The boundaries of a scan are those of every-frame mode, from fewer frames."""
    for name in ("clock_moving_360p25.mp4", "distractor_life_25.mp4"):
        scan = detect_video(samples_dir / name, detector=detector, views=["full"])
        every = detect_video(samples_dir / name, detector=detector, views=["full"], sample_fps=None)
        assert scan.scan is not None and every.scan is None and every.frames_processed == every.frames_total
        assert [(s.start_frame, s.end_frame) for s in scan.segments] == [
            (s.start_frame, s.end_frame) for s in every.segments
        ]
        assert [(s.start_s, s.end_s) for s in scan.segments] == [(s.start_s, s.end_s) for s in every.segments]
        assert (
            scan.frames_processed
            == scan.scan["frames_coarse"] + scan.scan["frames_refined"]
            < every.frames_processed / 2
        )
        assert scan.frames_total == every.frames_total


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_the_api_scans_by_default_through_its_chunks(make_client, samples_dir, detector):
    """Chunks of 3 s (the coarse pass fans out, then the windows do): the same result as detect_video's scan."""
    client = make_client(chunk_s=3.0)
    with Receiver() as rx:
        resp = client.post(
            "/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url, "views": ["full"]}
        )
        assert resp.status_code == 202, resp.text
        doc = rx.wait_for(1)[0]["json"]
    expected = detect_video(samples_dir / "clock_moving_360p25.mp4", detector=detector, views=["full"]).to_json()
    assert doc["status"] == "succeeded" and doc["scan"] == expected["scan"] and len(doc["scan"]["refined"]) == 4
    assert {k: v for k, v in doc.items() if k not in ("job_id", "status")} == json.loads(json.dumps(expected))


def test_scan_with_a_sample_rate_is_refused(make_client):
    client = make_client()
    resp = client.post("/video-inference", json={"filename": "clock_moving_360p25.mp4", "scan": True, "sample_fps": 2})
    assert resp.status_code == 400 and "sample_fps sets the rate of sampled mode" in resp.json()["error"], resp.text
    proc = subprocess.run(
        [sys.executable, "-m", "clockwork.cli", "detect", "x.mp4", "--scan", "--sample-fps", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--scan with --sample-fps" in proc.stderr, proc.stderr


def test_split_refuses_a_negative_rate(capsys):
    from jobs.split import parse

    with pytest.raises(SystemExit) as exit_:
        parse(["--out", "slices", "--sample-fps", "-1"])
    assert (
        exit_.value.code == 2
        and "--sample-fps must be 0 (every frame) or a positive number, got -1" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        parse(["--out", "slices", "--scan", "--sample-fps", "2"])
    assert "--scan with --sample-fps" in capsys.readouterr().err


def test_a_scan_is_scored_by_the_clips_time_not_by_where_it_looked():
    """A scan looks at a few evenly spaced frames and at every frame around a change: its plain share of
    matched frames undercounts a clock seen most of the time; the time-weighted share does not."""
    from types import SimpleNamespace

    from clockwork.timeline.result import Detection, FrameDetections
    from clockwork.training.evalset import EvalItem, examined_frames, score_clip

    box = [100.0, 100.0, 50.0, 50.0]
    item = EvalItem("c.mp4", "clock", "small", [box] * 20)
    # coarse ticks at frames 0, 5, 10, 15 (2 a second at 10 fps) and every frame of 0-0.5 s around the change
    # at tick 5 (frames 0 and 5 seen twice: 10 model calls); the clock is matched from frame 5 on
    seen = {5, 10, 15}
    frames = [FrameDetections(i, i / 10, [Detection(*box, "clock", 0.9)]) for i in sorted(seen)]
    result = SimpleNamespace(
        fps=10.0,
        frames_total=20,
        sample_fps=None,
        frames_processed=10,
        frame_data=frames,
        segments=["one"],
        scan={"coarse_fps": 2.0, "refined": [[0.0, 0.55]]},
    )
    assert examined_frames(result) == [0, 1, 2, 3, 4, 5, 10, 15]
    score = score_clip(item, result)
    assert score["share"] == 0.3 and score["time_share"] == 0.75  # frames 0-4 unmatched, 5-19 matched
    assert not score["found"] and score["found_time"]
    # evenly spaced frames: both shares agree
    even = SimpleNamespace(
        **{
            **result.__dict__,
            "scan": None,
            "sample_fps": 5.0,
            "frames_processed": 10,
            "frame_data": [FrameDetections(i, i / 10, [Detection(*box, "clock", 0.9)]) for i in range(0, 20, 2)],
        }
    )
    assert examined_frames(even) == list(range(0, 20, 2))
    assert score_clip(item, even)["share"] == score_clip(item, even)["time_share"] == 1.0
