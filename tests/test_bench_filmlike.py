"""bench.filmlike: a grained, film-bitrate copy of a generated clip (the GPU machine's film-like benchmark input)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import filmlike
from clockwork.video.decode import VideoDecoder, probe


def _frames(path, n):
    with VideoDecoder(path, end_s=n / 25) as dec:
        return np.stack([f.image for f in dec]).astype(np.int16)


def test_the_copy_keeps_the_frames_under_grain_at_a_films_bitrate(samples_dir, tmp_path):
    src, dst = samples_dir / "clock_moving_360p25.mp4", tmp_path / "grained.mp4"
    r = filmlike.write_filmlike(src, dst, seconds=2, mbps=3, grain=12)
    a, b = probe(src), probe(dst)
    assert r["frames"] == 50 and b.frames_listed == 50 and (b.width, b.height, b.codec) == (a.width, a.height, "h264")
    assert b.fps == pytest.approx(a.fps)
    assert r["mbps"] > 1.5  # the clean clip packs into far less; grain is what costs bits
    x, y = _frames(src, 50), _frames(dst, 50)
    diff = np.abs(x - y)
    assert 1.0 < diff.mean() < 12.0  # grain everywhere, the picture (the clock) where it was
    assert np.median(diff) < 10


def test_a_missing_source_is_refused_by_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["filmlike", str(tmp_path / "nope.mp4"), str(tmp_path / "out.mp4")])
    with pytest.raises(SystemExit):
        filmlike.main()
    err = capsys.readouterr().err
    assert "no such file" in err and "nope.mp4" in err and not (tmp_path / "out.mp4").exists()
