import pickle

import pytest

from clockwork.errors import CorruptVideoError, FFmpegError, NotAVideoError, NoVideoStreamError, VideoNotFoundError


@pytest.mark.parametrize("cls", [CorruptVideoError, NotAVideoError, NoVideoStreamError, VideoNotFoundError])
def test_video_errors_cross_process_boundaries_with_their_fields(cls):
    err = pickle.loads(pickle.dumps(cls("/media/a.mp4", "the reason")))
    assert type(err) is cls and err.path == "/media/a.mp4" and err.reason == "the reason"
    assert str(err).endswith("/media/a.mp4: the reason")


def test_ffmpeg_error_keeps_command_and_stderr():
    err = pickle.loads(pickle.dumps(FFmpegError("ffmpeg failed", cmd=["ffmpeg", "-i", "x"], stderr="Invalid data")))
    assert err.cmd == ["ffmpeg", "-i", "x"] and err.stderr == "Invalid data" and "Invalid data" in str(err)
