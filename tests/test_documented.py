"""What a new user met where the software did not behave as documented: each message names the problem and the way
out (the README's commands themselves run in tests/test_readme.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clockwork.cli import main as cli
from clockwork.store.catalog import Catalog
from clockwork.testing import free_port

REPO = Path(__file__).resolve().parent.parent


def run_job(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_submit_to_a_port_nobody_listens_on_names_url(capsys):
    code = cli(["submit", "x.mp4", "--url", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and "cannot reach the API at http://127.0.0.1:" in err[0] and "--url" in err[0]
    ), err


def test_a_relative_media_root_inside_rays_copy_says_why(tmp_path):
    copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_x"
    copy.mkdir(parents=True)
    proc = run_job(
        "jobs.split",
        "--media-root",
        "var/samples",
        "--out",
        str(tmp_path / "slices"),
        "--database-url",
        f"sqlite:///{tmp_path}/c.sqlite",
        cwd=copy,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Ray's copy of the working directory" in proc.stderr and "absolute path" in proc.stderr, proc.stderr


def test_a_job_run_directly_against_a_dead_cluster_gives_up_with_one_line(tmp_path):
    (tmp_path / "media").mkdir()
    port = free_port()
    proc = run_job(
        "jobs.split",
        "--media-root",
        str(tmp_path / "media"),
        "--out",
        str(tmp_path / "slices"),
        "--database-url",
        f"sqlite:///{tmp_path}/c.sqlite",
        env={"RAY_ADDRESS": f"127.0.0.1:{port}"},
        timeout=60,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("jobs.split: error: no Ray cluster answers at"), proc.stderr
    assert f"127.0.0.1:{port} (from RAY_ADDRESS)" in lines[-1]


def test_join_names_an_unknown_flag_and_the_labels_it_has(tmp_path):
    proc = run_job("jobs.join", "--bogus")
    assert (
        proc.returncode == 2
        and "unrecognized arguments: --bogus" in proc.stderr
        and "--out" not in proc.stderr.splitlines()[-1]
    )
    db = f"sqlite:///{tmp_path}/c.sqlite"
    catalog = Catalog(db)
    snippet = tmp_path / "a.mp4"
    snippet.write_bytes(b"x")
    video = tmp_path / "film.mp4"
    from clockwork.timeline.result import VideoResult

    result = VideoResult(
        video_file="film.mp4",
        fps=25.0,
        width=64,
        height=64,
        duration_s=4.0,
        frames_total=100,
        frames_processed=100,
        model={},
        labels=["clock"],
        min_score=0.7,
        sample_fps=None,
    )
    catalog.add_result(str(video), result, {})
    video_id = next(iter(catalog.library().values())).video_id
    catalog.plan_snippets(
        [
            {
                "name": "a.mp4",
                "video_id": video_id,
                "label": "clock",
                "start_s": 0.0,
                "end_s": 1.0,
                "max_score": 0.9,
                "path": str(snippet),
                "clock_minutes": None,
                "clock_confidence": None,
            }
        ]
    )
    catalog.finish_snippet("a.mp4", phash="0" * 16)
    catalog.close()
    proc = run_job("jobs.join", "--label", "klock", "--out", str(tmp_path / "out.mp4"), "--database-url", db)
    assert (
        proc.returncode == 2 and "no 'klock' snippets" in proc.stderr and "snippets labelled 'clock'" in proc.stderr
    ), proc.stderr


def test_a_missing_file_says_names_are_relative_to_the_media_roots(make_client):
    client = make_client()
    resp = client.post("/video-inference", json={"filename": "var/samples/clock_static_720p30.mp4"})
    assert resp.status_code == 404 and "relative to the server's media roots" in resp.json()["error"]


def test_docs_show_each_fields_type_and_this_servers_default(make_client):
    page = make_client(api_token=None, min_score=0.6).get("/docs").text
    assert "0 or number (0.01 to 1000) or null" in page  # sample_fps and multiscale_fps: 0, or a rate in range
    assert "<code>0.6</code>" in page and "full | zoomout | tiles" in page


@pytest.mark.parametrize("seconds, shown", [(0.52, "00:00:00.52"), (61.256, "00:01:01.26")])
def test_segment_times_keep_their_hundredths(seconds, shown):
    from clockwork.remix.pages import hms_cs

    assert hms_cs(seconds) == shown


def test_a_jobs_page_says_delivered_after_its_attempts(make_client):
    from clockwork.testing import Receiver, wait_for_job

    client = make_client()
    with Receiver() as rx:
        job = client.post(
            "/video-inference",
            json={
                "filename": "clock_moving_360p25.mp4",
                "sample_fps": 1,
                "views": ["full"],
                "read_time": False,
                "postback_url": rx.url,
            },
        ).json()["job_id"]
        rx.wait_for(1, job_id=job, timeout=120)
        wait_for_job(lambda j: client.get(f"/jobs/{j}").json(), job, lambda s: s["postback"]["delivered"], 60)
    page = client.get(f"/ui/jobs/{job}").text
    assert "delivered after 1 attempt(s)" in page, page[page.find("Postback") :][:300]
