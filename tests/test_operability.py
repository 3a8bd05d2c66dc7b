"""What a new user meets: the README's request as written, discovery (OpenAPI, /docs, GET /jobs),
cancelling, redelivery, the Python client and `clockwork submit`, `clockwork annotate`, progress lines
off a terminal, `--version` and the serve flags."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from clockwork.testing import Receiver, wait_for_job

REPO = Path(__file__).resolve().parent.parent


def wait(client, job_id, pred, timeout=120.0):
    return wait_for_job(lambda j: client.get(f"/jobs/{j}").json(), job_id, pred, timeout)


@pytest.mark.slow  # a full detection at the README's settings (~9 s)
def test_the_readmes_request_runs_as_written(make_client):
    """The body of the README's curl example, posted as it stands, runs to a result without a postback_url."""
    readme = (REPO / "README.md").read_text()
    body = json.loads(re.search(r"-d '(\{\"filename\".*?\})'", readme).group(1))
    key = re.search(r"-H 'Idempotency-Key: ([^']+)'", readme).group(1)
    client = make_client(postback_allow=[], api_token=None)
    resp = client.post("/video-inference", json=body, headers={"Idempotency-Key": key})
    assert resp.status_code == 202, resp.text
    status = wait(client, resp.json()["job_id"], lambda s: s["status"] == "succeeded")
    assert status["postback"] is None and client.get(f"/jobs/{status['job_id']}/result").json()["segments"]


def test_listing_cancelling_and_redelivering(make_client):
    client = make_client()
    with Receiver() as rx:
        long_job = client.post(
            "/video-inference", json={"filename": "clock_static_720p30.mp4", "sample_fps": 0, "postback_url": rx.url}
        ).json()["job_id"]
        quick = client.post(
            "/video-inference",
            json={"filename": "clock_moving_360p25.mp4", "sample_fps": 1, "views": ["full"], "postback_url": rx.url},
        ).json()["job_id"]
        wait(client, long_job, lambda s: s["status"] == "running")
        resp = client.delete(f"/jobs/{long_job}")
        assert resp.status_code == 202 and resp.json()["status"] == "cancelled", resp.text
        [cancelled] = rx.wait_for(1, job_id=long_job, timeout=30)
        assert cancelled["json"]["status"] == "cancelled"
        assert client.delete(f"/jobs/{long_job}").status_code == 409  # already ended
        first = rx.wait_for(1, job_id=quick)[0]
        page = client.get("/jobs?limit=1").json()
        assert (
            page["total"] == 2
            and len(page["jobs"]) == 1
            and page["jobs"][0]["job_id"] == quick
            and "offset=1" in page["next"]
        )
        assert [j["job_id"] for j in client.get("/jobs?status=cancelled").json()["jobs"]] == [long_job]
        assert client.get("/jobs?status=bogus").status_code == 400 and client.get("/jobs?limit=0").status_code == 400
        wait(client, quick, lambda s: s["postback"]["delivered"])
        assert client.post(f"/jobs/{quick}/postback").status_code == 202
        posts = rx.wait_for(2, job_id=quick, timeout=30)
    assert (
        first["headers"]["X-Clockwork-Delivery"] == f"{quick}.1"
        and posts[1]["headers"]["X-Clockwork-Delivery"] == f"{quick}.2"
    )
    assert posts[1]["body"] == first["body"]
    assert (
        client.get(f"/jobs/{long_job}").json()["status"] == "cancelled"
    )  # the detection that was running did not overwrite it


def test_openapi_and_an_offline_docs_page(make_client):
    client = make_client()
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and {"/video-inference", "/jobs", "/jobs/{job_id}", "/readyz"} <= set(
        spec["paths"]
    )
    assert spec["components"]["schemas"]["InferenceRequest"]["required"] == ["filename"]
    page = client.get("/docs").text
    assert "/video-inference" in page and "sample_fps" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere


def test_python_client_and_submit_command(live_app, capsys):
    from clockwork.cli import main
    from clockwork.client import ApiError, Client

    base = live_app(api_token="tok")
    api = Client(base, "tok")
    job = api.submit("clock_moving_360p25.mp4", sample_fps=2, views=["full"])
    assert api.wait(job["job_id"], timeout_s=120, interval_s=0.2)["status"] == "succeeded"
    assert api.result(job["job_id"])["segments"] and api.jobs()["total"] == 1
    with pytest.raises(ApiError, match="did you mean 'clock'") as exc:
        api.submit("clock_moving_360p25.mp4", labels=["clok"])
    assert exc.value.status == 400
    with pytest.raises(ApiError) as exc:
        Client(base, "wrong").jobs()
    assert exc.value.status == 401
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".token") as fh:
        fh.write("tok\n")
        fh.flush()
        code = main(
            [
                "submit",
                "clock_moving_360p25.mp4",
                "--url",
                base,
                "--token-file",
                fh.name,
                "--wait",
                "--sample-fps",
                "2",
                "--views",
                "full",
            ]
        )
    out = capsys.readouterr().out
    assert (
        code == 0 and "2 segment(s)" in out and re.search(r"job [0-9a-f]{32} \w+: http://127\.0\.0\.1:\d+/jobs/", out)
    )


def test_progress_lines_off_a_terminal():
    from clockwork.cli import Progress

    stream = io.StringIO()  # not a TTY: lines, not a bar
    progress = Progress("film.mp4", every_s=0.0, stream=stream)
    progress(10.0, 40.0, "scan")
    progress(40.0, 40.0, "scan")
    progress(1.5, 3.0, "refine")  # a new stage with its own total, fixed from its start
    progress(3.0, 3.0, "refine")
    lines = stream.getvalue().splitlines()
    assert re.match(r"film\.mp4 \(scan\): 10\.0/40\.0 video s \(25%\), [\d.]+ video s/s, ETA \d\d:\d\d:\d\d$", lines[0])
    assert lines[1].startswith("film.mp4 (scan): 40.0/40.0 video s (100%)")
    assert lines[2].startswith("film.mp4 (refine): 1.5/3.0 video s (50%)")
    assert lines[-1].startswith("film.mp4 (refine): 3.0/3.0 video s (100%)") and len(lines) == 4


def test_detect_reports_each_stage_of_a_scan_in_video_seconds(samples_dir):
    from clockwork.timeline.pipeline import STAGE_COARSE, STAGE_REFINE, detect_video

    seen: list[tuple[float, float, str]] = []
    result = detect_video(
        samples_dir / "clock_moving_360p25.mp4",
        views=["full"],
        read_time=False,
        progress=lambda done, total, stage: seen.append((done, total, stage)),
    )
    stages = [stage for _, _, stage in seen]
    assert stages[0] == STAGE_COARSE and stages[-1] == STAGE_REFINE and sorted(stages, key=stages.index) == stages
    for name in (STAGE_COARSE, STAGE_REFINE):
        mine = [(done, total) for done, total, stage in seen if stage == name]
        assert len({total for _, total in mine}) == 1  # a stable total
        assert [done for done, _ in mine] == sorted(done for done, _ in mine) and mine[-1][0] == mine[-1][1]
    assert seen[0][1] == result.duration_s
    assert abs(seen[-1][1] - sum(b - a for a, b in result.scan["refined"])) < 1e-6


def test_annotate_draws_the_boxes(samples_dir, tmp_path, capsys):
    import av

    from clockwork.cli import main

    video = samples_dir / "clock_moving_360p25.mp4"
    assert (
        main(["annotate", str(video), "--out", str(tmp_path / "frames"), "--sample-fps", "2", "--views", "full"]) == 0
    )
    frames = sorted((tmp_path / "frames").glob("frame_*.jpg"))
    assert frames and "frames with boxes" in capsys.readouterr().out
    result = tmp_path / "r.json"
    assert main(["detect", str(video), "--sample-fps", "2", "--views", "full", "--json", str(result)]) == 0
    assert main(["annotate", str(video), "--result", str(result), "--out", str(tmp_path / "a.mp4")]) == 0
    with av.open(str(tmp_path / "a.mp4")) as out, av.open(str(video)) as src:
        assert out.streams.video[0].frames == src.streams.video[0].frames


def test_version_and_serve_flags(tmp_path):
    from clockwork.cli import build_parser
    from serve_app.local import _app_args

    proc = subprocess.run([str(REPO / ".venv/bin/clockwork"), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and re.match(r"clockwork \d", proc.stdout)
    (tmp_path / "token").write_text("s3cret\n")
    args = build_parser().parse_args(
        [
            "serve",
            "--media-root",
            str(tmp_path),
            "--postback-allow",
            "127.0.0.0/8",
            "--api-token-file",
            str(tmp_path / "token"),
            "--max-active-jobs",
            "7",
            "--device",
            "cpu",
        ]
    )
    built = _app_args(args)
    assert (
        built["postback_allow"] == ["127.0.0.0/8"] and built["api_token"] == "s3cret" and built["max_active_jobs"] == 7
    )
    assert built["detector"] == {"device": "cpu"}
    missing = build_parser().parse_args(["serve", "--api-token-file", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="cannot read --api-token-file"):
        _app_args(missing)


def test_concat_reports_its_progress_from_ffmpeg(tmp_path):
    from clockwork.remix import concat, write_videolist
    from clockwork.video import ffmpeg

    piece = tmp_path / "piece.mp4"
    ffmpeg.run(
        ["-y", "-f", "lavfi", "-i", "testsrc=s=64x64:r=25:d=3", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(piece)]
    )
    seen: list[float] = []
    concat(write_videolist([piece] * 4, tmp_path / "list.txt"), tmp_path / "out.mp4", on_progress=seen.append)
    assert seen and seen == sorted(seen) and 11.0 <= seen[-1] <= 12.1, seen  # four 3 s pieces, as ffmpeg writes them


def test_a_catalog_inside_rays_copy_is_refused(tmp_path, monkeypatch):
    from clockwork import settings
    from jobs._common import Fatal, open_catalog

    inside = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "x"
    with pytest.raises(Fatal, match="inside Ray's temporary copy"):
        open_catalog(f"sqlite:///{inside}/catalog.sqlite")
    monkeypatch.delenv("CLOCKWORK_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert settings.data_dir() == tmp_path / "data" / "clockwork"  # a stable user folder, not the working directory
