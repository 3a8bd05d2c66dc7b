"""The split and join jobs, submitted with `ray job submit` to a real two-node local Ray cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from clockwork.store.catalog import Catalog, Remix
from clockwork.video.ffmpeg import probe_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))


def submit(cluster, *args: str) -> subprocess.CompletedProcess:
    """`ray job submit` through Ray's own CLI; the job's stdout comes back in ours."""
    return subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            cluster["dashboard"],
            "--working-dir",
            str(REPO),
            "--",
            sys.executable,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


def local(cluster, *args: str, env=None) -> subprocess.CompletedProcess:
    """The same entrypoint run directly against the cluster (for the failure cases)."""
    env = {**os.environ, "RAY_ADDRESS": cluster["address"], **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def library(tmp_path_factory, samples_dir):
    root = tmp_path_factory.mktemp("library")
    media = root / "media"
    media.mkdir()
    for f in samples_dir.glob("*.mp4"):
        shutil.copy(f, media / f.name)
    return {"media": media, "slices": root / "slices", "db": f"sqlite:///{root}/catalog.sqlite", "root": root}


@pytest.fixture(scope="module")
def split_run(ray_cluster, library):
    # at its defaults, on a library with no results yet: every video is detected by the job itself
    proc = submit(
        ray_cluster,
        "-m",
        "jobs.split",
        "--media-root",
        str(library["media"]),
        "--out",
        str(library["slices"]),
        "--database-url",
        library["db"],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_split_cuts_one_snippet_per_ground_truth_interval(split_run, library, manifest):
    from sqlalchemy import select

    from clockwork.store.catalog import Catalog, Snippet, Video

    cat = Catalog(library["db"])
    with cat.session() as s:
        rows = s.execute(select(Snippet, Video).join(Video)).all()
    cat.close()
    found: dict[str, list[tuple[float, float]]] = {}
    for sn, video in rows:
        assert sn.status == "done" and Path(sn.path).is_file() and sn.phash
        found.setdefault(Path(video.path).name, []).append((sn.start_s, sn.end_s))
    for name, entry in manifest["files"].items():
        truth = entry["clock_intervals"]
        got = sorted(found.get(name, []))
        assert len(got) == len(truth), (name, got, truth)
        for (a, b), (c, d) in zip(got, truth, strict=True):
            assert abs(a - c) <= 0.5 and abs(b - d) <= 0.5
    assert len(list(library["slices"].glob("*.mp4"))) == len(rows) == 6
    assert not list(library["slices"].glob(".*"))  # no temporary files left


def test_every_snippet_has_the_profile(split_run, library):
    for clip in library["slices"].glob("*.mp4"):
        streams = probe_json(clip)["streams"]
        v = [s for s in streams if s["codec_type"] == "video"]
        a = [s for s in streams if s["codec_type"] == "audio"]
        assert len(v) == 1 and len(a) == 1
        assert (v[0]["codec_name"], v[0]["width"], v[0]["height"], v[0]["r_frame_rate"], v[0]["pix_fmt"]) == (
            "h264",
            1280,
            720,
            "30/1",
            "yuv420p",
        )
        assert (a[0]["codec_name"], a[0]["sample_rate"], a[0]["channels"]) == ("aac", "48000", 2)


def test_tasks_spread_over_both_nodes(split_run):
    assert re.search(r"cut this run on 2 node\(s\)", split_run.stdout), split_run.stdout[-2000:]


def test_rerun_is_idempotent(split_run, ray_cluster, library):
    before = {p.name: p.stat().st_mtime_ns for p in library["slices"].glob("*.mp4")}
    proc = submit(
        ray_cluster,
        "-m",
        "jobs.split",
        "--media-root",
        str(library["media"]),
        "--out",
        str(library["slices"]),
        "--database-url",
        library["db"],
        "--sample-fps",
        "5",
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "0 snippet(s) cut this run" in proc.stdout and "6 already done" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in library["slices"].glob("*.mp4")} == before


def test_join_makes_a_verified_remix_without_the_duplicate(split_run, ray_cluster, library):
    out = library["root"] / "remix" / "out.mp4"
    proc = submit(ray_cluster, "-m", "jobs.join", "--out", str(out), "--database-url", library["db"], "--seed", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 near-duplicate(s)" in proc.stdout
    lines = (out.parent / "videolist.txt").read_text().splitlines()
    assert lines[0] == "ffconcat version 1.0" and len(lines) == 1 + 4  # 5 clock sources, the reupload dropped
    names = [re.match(r"file '(.*)'$", line).group(1) for line in lines[1:]]
    expected = 0.0
    for n in names:
        expected += float(probe_json(n)["format"]["duration"])
    info = probe_json(out)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert abs(float(info["format"]["duration"]) - expected) < 0.5
    report = (out.parent / "out.html").read_text()
    for n in names:
        assert f'data-name="{Path(n).name}"' in report
    assert report.count('class="timeline"') == 1 + 5  # where the snippets sit, and one per source (the reupload too)
    assert "00:00:00" in report and 'id="no-clocks"' in report  # a time axis; the videos where no clock was found
    with Catalog(library["db"]).session() as s:  # the catalog keeps the remix for the web UI
        [remix] = s.scalars(select(Remix)).all()
        assert [Path(sn["path"]).name for sn in remix.document["snippets"]] == [Path(n).name for n in names]
        assert remix.document["snippets"][0]["offset_s"] == 0 and remix.document["snippets"][1]["offset_s"] > 0
    # the same seed gives the same remix order
    again = submit(
        ray_cluster,
        "-m",
        "jobs.join",
        "--out",
        str(library["root"] / "again" / "out.mp4"),
        "--database-url",
        library["db"],
        "--seed",
        "3",
    )
    assert again.returncode == 0
    assert (library["root"] / "again" / "videolist.txt").read_text() == (out.parent / "videolist.txt").read_text()


def test_join_in_time_of_day_order(split_run, ray_cluster, library, manifest):
    """jobs.split read the dials (its default); jobs.join --order time-of-day lays each snippet where the remix's
    own clock (its start plus its running time) shows what the snippet's clock shows, and black cards showing the
    time fill the rest. Checked against the sample manifest's true times, wherever a clip is on screen."""
    from clockwork.remix.annotate import frame_at
    from clockwork.timeread.clocktime import circular_error, hhmm_to_minutes, parse_day_time

    out = library["root"] / "clock" / "out.mp4"
    proc = submit(
        ray_cluster,
        "-m",
        "jobs.join",
        "--out",
        str(out),
        "--database-url",
        library["db"],
        "--order",
        "time-of-day",
        "--per-source",
        "2",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with Catalog(library["db"]).session() as s:
        doc = s.scalars(select(Remix).order_by(Remix.id.desc())).first().document
    start, span = parse_day_time(doc["coverage"]["start"]), doc["coverage"]["span_minutes"]
    assert 10 * 60 + 9 <= start <= 10 * 60 + 11 and 5 <= span <= 10, doc[
        "coverage"
    ]  # the sample clocks show 10:10-10:15
    assert abs(float(probe_json(out)["format"]["duration"]) - span * 60) < 1.0  # the remix runs in real time
    assert len(doc["snippets"]) >= 5 and doc["cards"], doc
    for sn in doc["snippets"]:
        entry = manifest["files"][Path(sn["source"]).name]
        [truth] = [
            hhmm_to_minutes(t)
            for (a, b), t in zip(entry["clock_intervals"], entry["clock_times"], strict=True)
            if a < sn["end_s"] and sn["start_s"] < b
        ]
        for t in (sn["offset_s"], sn["offset_s"] + sn["played_s"] - 0.05):
            running = (start + int(t // 60)) % 720
            assert circular_error(running, truth) <= 1, (sn, t, running, truth)
        assert (frame_at(out, sn["offset_s"] + sn["played_s"] / 2) > 40).mean() > 0.1  # a clip, not a card
    card = doc["cards"][0]
    assert (frame_at(out, card["offset_s"] + card["duration_s"] / 2) > 40).mean() < 0.05  # black, the time in white
    assert 'id="coverage"' in out.with_suffix(".html").read_text()
    # every source known to be p.m.: the same clips, 12 hours on; --gaps skip plays them back to back
    pm = local(
        ray_cluster,
        "jobs.join",
        "--out",
        str(library["root"] / "pm" / "out.mp4"),
        "--database-url",
        library["db"],
        "--order",
        "time-of-day",
        "--pm",
        "*.mp4",
        "--gaps",
        "skip",
    )
    assert pm.returncode == 0, pm.stderr[-2000:]
    with Catalog(library["db"]).session() as s:
        doc = s.scalars(select(Remix).order_by(Remix.id.desc())).first().document
    assert doc["coverage"]["start"].startswith("22:") and not doc["cards"]
    bad = local(
        ray_cluster,
        "jobs.join",
        "--out",
        str(out),
        "--database-url",
        library["db"],
        "--order",
        "time-of-day",
        "--start",
        "25:99",
    )
    assert bad.returncode == 2 and "Invalid time" in bad.stderr, bad.stderr[-2000:]


def test_library_without_detections(ray_cluster, samples_dir, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(samples_dir / "distractor_life_25.mp4", media)
    proc = local(
        ray_cluster,
        "jobs.split",
        "--media-root",
        str(media),
        "--out",
        str(tmp_path / "slices"),
        "--database-url",
        f"sqlite:///{tmp_path}/c.sqlite",
        "--sample-fps",
        "5",
        "--views",
        "full",
    )
    assert proc.returncode == 2 and "no 'clock' segments" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "slices").exists()
    proc = local(
        ray_cluster, "jobs.join", "--out", str(tmp_path / "out.mp4"), "--database-url", f"sqlite:///{tmp_path}/c.sqlite"
    )
    assert proc.returncode == 2 and "no 'clock' snippets" in proc.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_corrupt_source_is_reported_and_the_rest_continue(ray_cluster, samples_dir, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(samples_dir / "clock_moving_360p25.mp4", media)
    data = (samples_dir / "clock_static_720p30.mp4").read_bytes()
    (media / "broken.mp4").write_bytes(data[: len(data) // 3])
    proc = local(
        ray_cluster,
        "jobs.split",
        "--media-root",
        str(media),
        "--out",
        str(tmp_path / "slices"),
        "--database-url",
        f"sqlite:///{tmp_path}/c.sqlite",
        "--sample-fps",
        "5",
        "--views",
        "full",
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "broken.mp4: detection failed: CorruptVideoError" in proc.stderr
    assert len(list((tmp_path / "slices").glob("*.mp4"))) == 2


def test_deleted_snippet_file(split_run, ray_cluster, library, tmp_path):
    db_copy = tmp_path / "c.sqlite"
    shutil.copy(library["db"].removeprefix("sqlite:///"), db_copy)
    from sqlalchemy import select

    from clockwork.store.catalog import Catalog, Snippet

    cat = Catalog(f"sqlite:///{db_copy}")
    with cat.session() as s:
        row = s.scalars(select(Snippet)).first()
        row.path = str(tmp_path / "gone.mp4")
    cat.close()
    proc = local(ray_cluster, "jobs.join", "--out", str(tmp_path / "out.mp4"), "--database-url", f"sqlite:///{db_copy}")
    assert proc.returncode == 2 and "are gone" in proc.stderr and "gone.mp4" in proc.stderr
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.html").exists()


def test_ffmpeg_missing(ray_cluster, tmp_path):
    for job in ("jobs.split", "jobs.join"):
        proc = (
            local(
                ray_cluster,
                job,
                "--out",
                str(tmp_path / "x.mp4"),
                "--media-root",
                str(tmp_path),
                env={"CLOCKWORK_FFMPEG": "/nonexistent/ffmpeg"},
            )
            if job == "jobs.split"
            else local(
                ray_cluster, job, "--out", str(tmp_path / "x.mp4"), env={"CLOCKWORK_FFMPEG": "/nonexistent/ffmpeg"}
            )
        )
        assert proc.returncode == 2 and "ffmpeg not found" in proc.stderr, proc.stderr[-1000:]
        assert proc.stderr.strip().count("\n") == 0
