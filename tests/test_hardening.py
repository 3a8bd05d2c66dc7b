"""Defects found by attacking the running API, each pinned by a test: hostile inputs and
receivers, bomb files, races, a full disk, and what error text reveals. In-process app, real sockets,
real ffmpeg-made files, a real SQLite (and PostgreSQL where .ci/run provides it)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clockwork.errors import CorruptVideoError
from clockwork.store.catalog import Catalog, Job, QueueFullError
from clockwork.testing import Receiver, wait_for_job
from clockwork.timeline.options import DetectOptions
from clockwork.video.media import PathNotAllowedError
from serve_app.client import LocalDetectorClient
from tests.conftest import ffmpeg
from tests.test_postback import RawServer


def wait(client, job_id, pred, timeout=120.0):
    return wait_for_job(lambda j: client.get(f"/jobs/{j}").json(), job_id, pred, timeout)


def tiny(media: Path, name: str = "tiny.mp4", seconds: float = 1, size: str = "64x64", *extra: str) -> Path:
    media.mkdir(parents=True, exist_ok=True)
    out = media / name
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate=10:duration={seconds}",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        *extra,
        str(out),
    )
    return out


def json_error(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["status"] == status and body["error"]
    return body


def test_inputs_that_used_to_be_plain_500s_get_json_4xx(make_client, tmp_path):
    client = make_client(max_body_bytes=200_000)
    media = tmp_path / "media"
    (media / "loop_a.mp4").symlink_to(media / "loop_b.mp4")
    (media / "loop_b.mp4").symlink_to(media / "loop_a.mp4")
    url = "http://127.0.0.1:9/x"

    def post(body):
        return client.post(
            "/video-inference",
            content=body if isinstance(body, str) else json.dumps(body),
            headers={"Content-Type": "application/json"},
        )

    json_error(post("[" * 20000 + "]" * 20000), 400)
    json_error(post('{"filename": "a.mp4", "min_score": ' + "9" * 5000 + "}"), 400)
    json_error(post({"filename": "x" * 300 + ".mp4", "postback_url": url}), 403)
    assert (
        "too long" in json_error(post({"filename": "é" * 150 + ".mp4", "postback_url": url}), 403)["error"]
    )  # 300 bytes
    json_error(post({"filename": "/".join(["abc"] * 1100) + ".mp4", "postback_url": url}), 400)  # over 4,096
    assert "cannot be resolved" in json_error(post({"filename": "loop_a.mp4", "postback_url": url}), 403)["error"]
    for bad in (f"http://{'a' * 64}.example.com/", "http://a..b/"):
        assert "label" in json_error(post({"filename": "clock_moving_360p25.mp4", "postback_url": bad}), 400)["error"]


def test_resolution_over_the_limit_is_refused_before_decoding(make_client, tmp_path):
    client = make_client(max_frame_pixels=64 * 64 - 1)
    tiny(tmp_path / "media")
    body = json_error(client.post("/video-inference", json={"filename": "tiny.mp4"}), 422)
    assert "64x64" in body["error"] and "4,095 pixels" in body["error"] and str(tmp_path) not in body["error"]


def test_a_video_longer_than_the_limit_is_refused(make_client, tmp_path):
    tiny(tmp_path / "media", "two.mp4", 2)
    body = json_error(make_client(max_duration_s=1).post("/video-inference", json={"filename": "two.mp4"}), 422)
    assert "over the limit of 1 s" in body["error"]


def test_idempotency_key_rules_and_sample_fps_bounds(make_client):
    client = make_client()
    body = {"filename": "clock_moving_360p25.mp4", "sample_fps": 2, "views": ["full"]}
    first = client.post("/video-inference", json=body, headers={"Idempotency-Key": "k-7"})
    assert first.status_code == 202
    other = client.post("/video-inference", json={**body, "sample_fps": 3}, headers={"Idempotency-Key": "k-7"})
    assert "different request body" in json_error(other, 422)["error"]
    json_error(client.post("/video-inference", json=body, headers={"Idempotency-Key": "k" * 256}), 400)
    for fps in (5e-324, 0.001, 1001):
        json_error(client.post("/video-inference", json={**body, "sample_fps": fps}), 400)
    wait(client, first.json()["job_id"], lambda s: s["status"] == "succeeded")


def test_errors_and_urls_reveal_no_server_paths_or_client_host(make_client, samples_dir, tmp_path):
    client = make_client()
    media = tmp_path / "media"
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (media / "escape.mp4").symlink_to(outside)
    (media / "notes.mp4").write_text("not a video\n" * 10)
    for name, status in (("escape.mp4", 403), ("../secret.mp4", 403), ("notes.mp4", 422)):
        error = json_error(client.post("/video-inference", json={"filename": name}), status)["error"]
        assert str(tmp_path) not in error and str(samples_dir) not in error, error
    resp = client.post(
        "/video-inference",
        json={"filename": "clock_moving_360p25.mp4", "views": ["full"], "sample_fps": 1},
        headers={"Host": "evil.example", "Authorization": "bearer test-api-token"},
    )  # scheme in lower case
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert resp.json()["status_url"] == resp.headers["Location"] == f"/jobs/{job_id}"
    status = wait(client, job_id, lambda s: s["status"] == "succeeded")
    assert status["filename"] == "clock_moving_360p25.mp4" and status["result_url"] == f"/jobs/{job_id}/result"
    assert (
        make_client(public_url="https://api.example.org/")
        .post("/video-inference", json={"filename": "clock_moving_360p25.mp4"})
        .json()["status_url"]
        .startswith("https://api.example.org/jobs/")
    )


class FailingDetector(LocalDetectorClient):
    """A detector whose chunks fail the way a crashed remote one does: a long message full of internals."""

    def detect_chunk(self, *args, **kwargs):
        raise RuntimeError(
            'Traceback (most recent call last):\n  File "/home/ray/anaconda3/x.py", line 1\n'
            "\x1b[36m(ServeReplica pid=4242, ip=10.0.0.7)\x1b[0m actor_id=deadbeef"
        )


def test_failure_text_hides_internals(make_client, detector):
    client = make_client(detector_client=FailingDetector(detector), chunk_retries=0)
    with Receiver() as rx:
        job_id = client.post(
            "/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url}
        ).json()["job_id"]
        doc = rx.wait_for(1, job_id=job_id, timeout=30)[0]["json"]
    assert (
        doc["status"] == "failed" and doc["error"] == "detection failed: RuntimeError (details are in the server log)"
    )
    assert client.get(f"/jobs/{job_id}").json()["error"] == doc["error"]


def test_slow_receivers_never_hold_health_checks_or_status_calls(make_client, tmp_path):
    """Eight receivers that trickle their answer one byte a second: more than the default thread pool has
    threads on this machine. Health checks and status calls still answer at once."""
    tiny(tmp_path / "media")

    def trickle(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(30):
            conn.sendall(b"X")
            time.sleep(1)

    server = RawServer(trickle)
    client = make_client(postback_timeout_s=20, postback_max_attempts=1)
    ids = [
        client.post(
            "/video-inference",
            json={
                "filename": "tiny.mp4",
                "views": ["full"],
                "sample_fps": 1 + i / 10,
                "postback_url": f"http://127.0.0.1:{server.port}/h{i}",
            },
        ).json()["job_id"]
        for i in range(8)
    ]
    for job_id in ids:
        wait(client, job_id, lambda s: s["status"] == "succeeded", timeout=60)
    time.sleep(1)  # the postbacks are now in flight, each held by its receiver
    for _ in range(3):
        t = time.monotonic()
        assert client.get("/healthz").status_code == 200 and client.get(f"/jobs/{ids[0]}").status_code == 200
        assert time.monotonic() - t < 1.0
    assert not client.get(f"/jobs/{ids[0]}").json()["postback"]["delivered"]
    server.close()


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_read(make_client, tmp_path, detector):
    """The API checked media/v.mp4; then it became a link to a file outside the roots. The runner and
    the detector open the file again, confined, and refuse it."""
    import asyncio

    media = tmp_path / "media"
    tiny(media, "v.mp4")
    outside = tiny(tmp_path, "outside.mp4")
    client = make_client()
    runner = client.app.state.api.runner
    os.remove(media / "v.mp4")
    (media / "v.mp4").symlink_to(outside)
    roots = [str(media)]

    async def read_chunk():
        options = DetectOptions(min_score=0.5, scan=False, sample_fps=1, views=("full",))
        async for _ in LocalDetectorClient(detector).detect_chunk(
            str(media / "v.mp4"), 0, None, options=options, rate=1, roots=roots
        ):
            pass

    with pytest.raises(PathNotAllowedError):
        asyncio.run(read_chunk())
    with pytest.raises(PathNotAllowedError):
        runner.checked_info(str(media / "v.mp4"))


@pytest.fixture(params=["sqlite", "postgresql"])
def race_catalog(request, tmp_path):
    if request.param == "sqlite":
        catalog = Catalog(f"sqlite:///{tmp_path}/race.sqlite")
    else:
        catalog = Catalog(request.getfixturevalue("postgres_url"))
        with catalog.session() as s:
            s.query(Job).delete()
    yield catalog
    catalog.close()


def _hammer(n: int, make_job, admit) -> list:
    out, barrier = [], threading.Barrier(min(n, 16))

    def one(i):
        if i < 16:
            barrier.wait()
        try:
            out.append(admit(make_job(i)))
        except QueueFullError as exc:
            out.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_admission_holds_under_concurrency(race_catalog):
    """200 identical keyless bodies make one job; 100 different ones against a limit of 20 admit 20."""

    def job(i, body="same"):
        return Job(video_path="/m/a.mp4", params={}, body_hash=body, dedupe_key=f"body:{body}")

    same = _hammer(200, job, lambda j: race_catalog.admit(j, max_active=1000, window_s=600))
    assert len({j.id for j, _ in same}) == 1 and sum(created for _, created in same) == 1
    many = _hammer(100, lambda i: job(i, f"b{i}"), lambda j: race_catalog.admit(j, max_active=20, window_s=600))
    admitted = [r for r in many if not isinstance(r, Exception)]
    assert race_catalog.count_active() == 20 and len(admitted) == 19  # the "same" job holds one place


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real full disk under the catalog (needs root, as on this machine and in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root and must be able to mount a tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_under_the_catalog_answers_503_and_readiness_says_why(make_client, small_disk):
    client = make_client(database_url=f"sqlite:///{small_disk}/catalog.sqlite")
    assert client.get("/readyz").json() == {"status": "ready"}
    filler = fill(small_disk)
    body = {"filename": "clock_moving_360p25.mp4", "views": ["full"]}
    resp = client.post("/video-inference", json=body)
    assert resp.status_code == 503 and "catalog" in resp.json()["error"], resp.text
    ready = json_error(client.get("/readyz"), 503)
    assert "catalog cannot be written" in ready["error"]
    assert client.get("/healthz").status_code == 200  # liveness: the process is fine
    filler.unlink()
    assert client.get("/readyz").status_code == 200
    assert client.post("/video-inference", json=body).status_code == 202


def test_truncation_is_also_caught_by_the_decoder(tmp_path):
    path = tiny(tmp_path, "cut.mp4", 6, "160x120", "-movflags", "+faststart")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    from clockwork.video.decode import VideoDecoder

    with pytest.raises(CorruptVideoError, match="truncated"), VideoDecoder(path) as dec:
        list(dec)


def test_cross_site_posts_are_refused_and_a_json_body_must_say_so(make_client):
    """A page elsewhere can make a browser POST text/plain without a CORS preflight: refused by its Origin (403),
    and a body that is not declared JSON is 415; the server's own origin and clients without Origin pass."""
    client = make_client(api_token=None)
    body = json.dumps({"filename": "clock_moving_360p25.mp4", "sample_fps": 1, "views": ["full"]})
    assert (
        "cross-site"
        in json_error(
            client.post(
                "/video-inference",
                content=body,
                headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
            ),
            403,
        )["error"]
    )
    assert (
        "application/json"
        in json_error(client.post("/video-inference", content=body, headers={"Content-Type": "text/plain"}), 415)[
            "error"
        ]
    )
    json_error(
        client.post("/video-inference", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}),
        415,
    )
    json_error(
        client.post("/video-inference", content=body, headers={"Content-Type": "application/json", "Origin": "null"}),
        403,
    )
    assert client.get("/jobs").json()["total"] == 0  # none of them made a job
    own = client.post(
        "/video-inference", content=body, headers={"Content-Type": "application/json", "Origin": "http://testserver"}
    )
    assert own.status_code == 202, own.text
    job = own.json()["job_id"]
    json_error(client.delete(f"/jobs/{job}", headers={"Origin": "https://evil.example"}), 403)
    json_error(client.post(f"/jobs/{job}/postback", headers={"Origin": "https://evil.example"}), 403)
    allowed = make_client(api_token=None, allowed_origins=["https://studio.example"])
    assert (
        allowed.post(
            "/video-inference",
            content=body,
            headers={"Content-Type": "application/json", "Origin": "https://studio.example"},
        ).status_code
        == 202
    )


def test_the_ui_forms_need_their_csrf_token_and_sign_in_is_throttled(make_client):
    import re

    client = make_client()  # with a token: the sign-in form
    client.headers.pop("Authorization", None)
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.cookies.get("clockwork_csrf") == csrf
    forged = client.post(
        "/ui/login", data={"token": "wrong", "next": "/ui/jobs", "csrf": "guess"}, follow_redirects=False
    )
    assert forged.status_code == 403 and "another site" in forged.text
    evil = client.post("/ui/login", data={"token": "x", "csrf": csrf}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    answers = [
        client.post("/ui/login", data={"token": f"wrong{i}", "csrf": csrf}, follow_redirects=False) for i in range(12)
    ]
    codes = [a.status_code for a in answers]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    assert int(answers[-1].headers["Retry-After"]) > 0
    fresh = make_client()
    fresh.headers.pop("Authorization", None)
    csrf = re.search(r'name="csrf" value="([^"]+)"', fresh.get("/ui/login").text).group(1)
    from tests.conftest import TOKEN

    signed = fresh.post("/ui/login", data={"token": TOKEN, "csrf": csrf, "next": "/ui/jobs"}, follow_redirects=False)
    assert signed.status_code == 303 and fresh.cookies.get("clockwork_token")
    jobs = fresh.get("/ui/jobs")
    assert 'id="sign-out"' in jobs.text
    out = fresh.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].endswith("/ui/login")
    fresh.cookies.delete("clockwork_token")  # the answer's Set-Cookie cleared it in a browser
    assert fresh.get("/ui/jobs", follow_redirects=False).status_code == 303  # signed out: back to the form


def test_unicode_digits_and_huge_numbers_are_4xx_not_500(make_client):
    client = make_client()
    json_error(client.get("/jobs?limit=²"), 400)
    json_error(client.get("/jobs?offset=9223372036854775808"), 400)
    assert client.get("/ui/jobs?offset=9223372036854775808").status_code == 200  # the first page
    for path in (
        "/ui/videos/²",
        "/ui/videos/9223372036854775808",
        "/ui/videos/1/frames/².jpg",
        "/ui/remix/99999999999999999999",
        "/ui/remix/²",
    ):
        assert client.get(path).status_code == 404, path


def test_a_symlink_loops_error_names_no_server_path(make_client, tmp_path):
    client = make_client()
    media = tmp_path / "media"
    (media / "loopA.mp4").symlink_to(media / "loopB.mp4")
    (media / "loopB.mp4").symlink_to(media / "loopA.mp4")
    error = json_error(client.post("/video-inference", json={"filename": "loopA.mp4"}), 403)["error"]
    assert "symlink loop" in error and str(tmp_path) not in error, error


def test_a_frame_over_the_limit_mid_stream_fails_the_job_before_it_is_converted(make_client, tmp_path):
    """64x64, then one larger frame, then 64x64 again, in one MPEG-TS: the header passes, the large frame fails the
    job."""
    media = tmp_path / "media"
    parts = []
    for name, size in (("a.ts", "64x64"), ("big.ts", "320x320"), ("c.ts", "64x64")):
        media.mkdir(parents=True, exist_ok=True)
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}:rate=10:duration={0.1 if name == 'big.ts' else 1}",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-f",
            "mpegts",
            str(media / name),
        )
        parts.append((media / name).read_bytes())
    (media / "mixed.ts").write_bytes(b"".join(parts))
    client = make_client(max_frame_pixels=64 * 64 * 4)
    job = client.post(
        "/video-inference", json={"filename": "mixed.ts", "sample_fps": 0, "views": ["full"], "read_time": False}
    )
    assert job.status_code == 202, job.text  # the header says 64x64
    status = wait(client, job.json()["job_id"], lambda s: s["status"] in ("succeeded", "failed"))
    assert status["status"] == "failed" and "320x320, over the limit of 16,384 pixels" in status["error"], status


def test_a_truncated_matroska_file_is_refused_and_results_say_what_was_checked(make_client, tmp_path):
    media = tmp_path / "media"
    whole = tiny(media, "whole.mkv", 20)
    data = whole.read_bytes()
    (media / "cut.mkv").write_bytes(data[: int(len(data) * 0.7)])
    client = make_client()
    error = json_error(
        client.post("/video-inference", json={"filename": "cut.mkv", "sample_fps": 1, "views": ["full"]}), 422
    )
    assert "truncated: the file ends at byte" in error["error"] and str(tmp_path) not in error["error"], error
    ts = tiny(media, "whole.ts", 2, "64x64", "-f", "mpegts")
    for name, claim in ((whole.name, "segment size"), (ts.name, "none")):
        job = client.post(
            "/video-inference", json={"filename": name, "sample_fps": 1, "views": ["full"], "read_time": False}
        )
        assert job.status_code == 202, job.text
        wait(client, job.json()["job_id"], lambda s: s["status"] == "succeeded")
        doc = client.get(f"/jobs/{job.json()['job_id']}/result").json()
        assert doc["completeness"]["checked_against"] == claim, (name, doc["completeness"])
