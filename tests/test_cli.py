"""The command line. Most tests call ``clockwork.cli.main`` in-process (a subprocess pays a cold start
of torch each time); one runs the installed command for real, exit status and stderr included."""

import json
import subprocess
import sys

import pytest

from clockwork.cli import main


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_detect_prints_segments_as_hms(samples_dir, capsys):
    assert main(["detect", str(samples_dir / "clock_moving_360p25.mp4"), "--sample-fps", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 segment(s)" in out and "00:00:05.000 -> 00:00:07." in out


def test_detect_with_no_mode_flag_scans(samples_dir, capsys):
    """The plainest command: no --scan, no --sample-fps (it once failed: the scan was handed sample_fps=None)."""
    assert (
        main(
            [
                "detect",
                str(samples_dir / "clock_moving_360p25.mp4"),
                "--device",
                "cpu",
                "--views",
                "full",
                "--json",
                "-",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["scan"] and doc["segments"], doc.get("scan")


def test_detect_json_to_stdout(samples_dir, capsys):
    assert (
        main(
            [
                "detect",
                str(samples_dir / "distractor_life_25.mp4"),
                "--json",
                "-",
                "--sample-fps",
                "2",
                "--device",
                "cpu",
                "--views",
                "full",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["has_clock"] is False and doc["video_file"] == "distractor_life_25.mp4"


@pytest.mark.slow  # a full job or two interpreters: the slow tier
def test_bad_input_exits_nonzero_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video\n" * 20)
    for target, words in [(tmp_path / "missing.mp4", "video not found"), (tmp_path / "notes.txt", "not a video file")]:
        proc = subprocess.run(
            [sys.executable, "-m", "clockwork.cli", "detect", str(target)], capture_output=True, text=True
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("clockwork: error: ") and words in lines[0], proc.stderr


def test_a_still_image_is_not_a_video(tmp_path):
    from clockwork.video import ffmpeg

    ffmpeg.run(["-y", "-f", "lavfi", "-i", "testsrc=s=64x64", "-frames:v", "1", str(tmp_path / "still.png")])
    proc = subprocess.run(
        [sys.executable, "-m", "clockwork.cli", "detect", str(tmp_path / "still.png")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "a still image (png_pipe), not a video" in proc.stderr, proc.stderr


def test_an_unwritable_json_path_is_refused_before_detecting(tmp_path, capsys):
    # the video is missing too: the --json error comes first, so nothing was opened or detected before it
    code = main(["detect", str(tmp_path / "missing.mp4"), "--json", "/nonexistent/dir/r.json"])
    err = capsys.readouterr().err
    assert code == 2 and "--json /nonexistent/dir/r.json: the folder /nonexistent/dir does not exist" in err, err


def test_labels_the_clock_head_refuses_name_its_labels_and_head_none(samples_dir, capsys):
    video = str(samples_dir / "distractor_life_25.mp4")
    assert main(["detect", video, "--labels", "klock", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'clock'" in err and "--head none" in err and "person" not in err, err
    assert main(["detect", video, "--labels", "person", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "finds only clock" in err and "--head none" in err, err


def test_bad_flag_value_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["detect", "x.mp4", "--min-score", "high"])
    assert exc.value.code == 2 and "--min-score: not a number: 'high'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["detect", "x.mp4", "--min-score", "2"])
    assert exc.value.code == 2 and "must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["detect", "x.mp4", "--sample-fps", "-1"])
    assert exc.value.code == 2 and "must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["detect", "x.mp4", "--multiscale-fps", "-5"])
    assert exc.value.code == 2 and "--multiscale-fps: must be >= 0" in capsys.readouterr().err


def test_unknown_view_exits_2_with_one_line(samples_dir, capsys):
    assert main(["detect", str(samples_dir / "distractor_life_25.mp4"), "--views", "full,zoom", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clockwork: error: Invalid views") and "full, zoomout, tiles" in err[0]


def test_serve_is_a_plugin_of_the_installed_package(capsys):
    """The core CLI never imports serve_app; the Serve layer adds `clockwork serve` by entry point."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--media-root" in capsys.readouterr().out
