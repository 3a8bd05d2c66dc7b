"""CPU decoding: true timestamps, rotation, sampling, and a typed error for every bad input."""

import subprocess

import numpy as np
import pytest

from clockwork.decode import VideoDecoder, probe
from clockwork.errors import CorruptVideoError, NotAVideoError, NoVideoStreamError, VideoError, VideoNotFoundError


def test_variable_frame_rate_gives_true_timestamps(make_video):
    # 1 s at 10 fps then 1 s at 30 fps, kept variable-rate in the MP4.
    path = make_video("vfr.mp4", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=1", "-f", "lavfi", "-i",
                      "testsrc2=s=160x120:r=30:d=1", "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
                      "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p")
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
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    str(raw)], check=True)  # ffmpeg applies the display matrix itself
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
    src = make_video("plain.mp4", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p")
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
