import json
import subprocess
import sys


def clockwork(*args):
    return subprocess.run([sys.executable, "-m", "clockwork.cli", *args], capture_output=True, text=True)


def test_detect_prints_segments_as_hms(samples_dir):
    proc = clockwork("detect", str(samples_dir / "clock_moving_360p25.mp4"), "--sample-fps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "2 segment(s)" in proc.stdout and "00:00:05.000 -> 00:00:07." in proc.stdout


def test_detect_json_to_stdout(samples_dir):
    proc = clockwork("detect", str(samples_dir / "distractor_life_25.mp4"), "--json", "-", "--sample-fps", "5")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["has_clock"] is False and doc["video_file"] == "distractor_life_25.mp4"


def test_bad_input_exits_nonzero_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video\n" * 20)
    for target, words in [(tmp_path / "missing.mp4", "video not found"), (tmp_path / "notes.txt", "not a video file")]:
        proc = clockwork("detect", str(target))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("clockwork: error: ") and words in lines[0], proc.stderr


def test_bad_flag_value_is_refused():
    proc = clockwork("detect", "x.mp4", "--min-score", "2")
    assert proc.returncode == 2 and "must be in [0, 1]" in proc.stderr
