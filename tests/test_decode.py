"""CPU decoding: true timestamps, rotation, sampling, and a typed error for every bad input."""

import subprocess

import numpy as np
import pytest

from clockwork.errors import CorruptVideoError, NotAVideoError, NoVideoStreamError, VideoError, VideoNotFoundError
from clockwork.video.decode import VideoDecoder, keyframe_times, probe


def test_variable_frame_rate_gives_true_timestamps(make_video):
    # 1 s at 10 fps then 1 s at 30 fps, kept variable-rate in the MP4.
    path = make_video(
        "vfr.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=10:d=1",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=30:d=1",
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1[v]",
        "-map",
        "[v]",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    )
    with VideoDecoder(path) as dec:
        times = [f.timestamp_s for f in dec]
    assert len(times) == 40
    assert times[9] == pytest.approx(0.9, abs=1e-3)
    assert times[10] == pytest.approx(1.0, abs=1e-3)
    assert times[11] == pytest.approx(1.0 + 1 / 30, abs=1e-3)  # index/avg-fps would say 0.55


def test_rotation_matches_ffmpeg_autorotate(samples_dir, tmp_path):
    path = samples_dir / "clock_portrait_2997.mp4"
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (360, 640, 90)
    raw = tmp_path / "f.rgb"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw)],
        check=True,
    )  # ffmpeg applies the display matrix itself
    expected = np.fromfile(raw, np.uint8).reshape(640, 360, 3)
    with VideoDecoder(path) as dec:
        first = next(iter(dec))
    assert first.image.shape == (640, 360, 3)
    assert np.abs(first.image.astype(int) - expected).mean() < 2.0


def test_sample_fps_keeps_evenly_spaced_frames(samples_dir):
    with VideoDecoder(samples_dir / "clock_60fps_480p.mp4", sample_fps=4) as dec:
        frames = list(dec)
        assert dec.frames_decoded == 240
    assert len(frames) == 16
    assert [f.index for f in frames[:3]] == [0, 15, 30]
    assert frames[1].timestamp_s == pytest.approx(0.25, abs=1e-3)


def test_frame_repr_shows_shape_not_data(samples_dir):
    with VideoDecoder(samples_dir / "distractor_life_25.mp4") as dec:
        frame = next(iter(dec))
    assert "272x480x3" in repr(frame) and "array" not in repr(frame)


def test_double_close_is_safe(samples_dir):
    dec = VideoDecoder(samples_dir / "distractor_life_25.mp4")
    dec.close()
    dec.close()


def test_bad_sample_fps():
    with pytest.raises(ValueError, match=r"Invalid sample_fps \(0\)"):
        VideoDecoder("whatever.mp4", sample_fps=0)


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="nope.mp4: no such file"):
        VideoDecoder(tmp_path / "nope.mp4")


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(NotAVideoError, match="not a regular file"):
        VideoDecoder(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n" * 50, bytes(range(256)) * 40])
def test_non_video_files(tmp_path, content):
    path = tmp_path / "notes.mp4"
    path.write_bytes(content)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        VideoDecoder(path)


def test_audio_only_file_has_no_video_stream(make_video):
    path = make_video("speech.m4a", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac")
    with pytest.raises(NoVideoStreamError, match=r"speech.m4a: the file has no video stream \(streams: audio\)"):
        VideoDecoder(path)


def test_truncated_file(samples_dir, tmp_path):
    data = (samples_dir / "clock_static_720p30.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptVideoError, match="cut.mp4"):
        with VideoDecoder(path) as dec:
            for _ in dec:
                pass


def test_truncated_before_index(make_video, tmp_path):
    """Without faststart the index sits at the end: cutting it off leaves a file FFmpeg cannot open."""
    src = make_video(
        "plain.mp4", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"
    )
    data = src.read_bytes()
    path = tmp_path / "noindex.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptVideoError, match="noindex.mp4: FFmpeg could not open it"):
        VideoDecoder(path)


def test_all_video_errors_share_a_base(tmp_path):
    assert issubclass(CorruptVideoError, VideoError) and issubclass(NotAVideoError, VideoError)


@pytest.mark.parametrize("sample_fps", [None, 3])
def test_chunks_decode_exactly_like_the_whole_file(samples_dir, sample_fps):
    """Frame numbers and times of time-range chunks (seek + demux count) match one whole pass."""
    path = samples_dir / "clock_moving_360p25.mp4"
    with VideoDecoder(path, sample_fps=sample_fps) as dec:
        whole = [(f.index, f.timestamp_s) for f in dec]
    parts = []
    for a, b in [(0, 2.5), (2.5, 5.0), (5.0, None)]:
        with VideoDecoder(path, sample_fps=sample_fps, start_s=a, end_s=b) as dec:
            parts += [(f.index, f.timestamp_s) for f in dec]
    assert parts == whole


def test_bad_chunk_is_refused():
    with pytest.raises(ValueError, match=r"Invalid chunk \(2.0, 1.0\)"):
        VideoDecoder("x.mp4", start_s=2.0, end_s=1.0)


def test_chunks_planned_on_keyframes_decode_nothing_twice(make_video):
    """A 10 s video with a keyframe every 29 frames (1.16 s; no scene-cut keyframes), cut into 3 s chunks: the
    boundaries
    move back to the keyframes at 2.32 s and 5.8 s, and a chunk started there decodes no frame of the chunk before it
    (one started at 3 s decodes 17). 2.32 s is a keyframe time whose float, divided by the MP4's 1/12800 time base,
    falls a hair under its tick: truncated, the seek went to the keyframe before it and decoded a whole interval
    twice."""
    from serve_app.runner import plan_chunks

    path = make_video(
        "gop.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=25:d=10",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "29",
        "-keyint_min",
        "29",
        "-sc_threshold",
        "0",
        "-video_track_timescale",
        "12800",
    )
    assert keyframe_times(path, [0.0, 3.0, 6.0, 2.32, 5.79]) == pytest.approx([0.0, 2.32, 5.8, 2.32, 4.64])
    assert plan_chunks(10.0, 3.0) == [(0.0, 3.0), (3.0, 6.0), (6.0, None)]
    planned = plan_chunks(10.0, 3.0, lambda times: keyframe_times(path, times))
    assert [a for a, _ in planned] == pytest.approx([0.0, 2.32, 5.8]) and [b for _, b in planned][:2] == [
        a for a, _ in planned
    ][1:]
    frames = []
    for a, b in planned:
        with VideoDecoder(path, start_s=a, end_s=b) as dec:
            frames += [f.index for f in dec]
            assert dec.frames_skipped == 0, (a, b)
    assert frames == list(range(250))
    with VideoDecoder(path, start_s=3.0, end_s=6.0) as dec:
        assert [f.index for f in dec] == list(range(75, 150)) and dec.frames_skipped == 17


def test_chunk_boundaries_stay_where_keyframes_are_unknown_or_too_early():
    from serve_app.runner import plan_chunks

    # no keyframe found (None), or one that would leave the chunk before it under half a chunk
    assert plan_chunks(10.0, 3.0, lambda times: [None, 1.0]) == [(0.0, 3.0), (3.0, 6.0), (6.0, None)]
    assert plan_chunks(10.0, 3.0, lambda times: [2.9, 4.0]) == [(0.0, 2.9), (2.9, 6.0), (6.0, None)]
    assert keyframe_times("/nonexistent.mp4", [1.0, 2.0]) == [None, None]
