"""The HTTP contract in-process: ``build_app`` with the real detector on this machine and no Ray, called
through Starlette's TestClient, with a real postback receiver on loopback and a real SQLite catalog.

What needs Ray itself (handles, batching across requests, replica kills, app restarts) is in
test_serve_app.py, the slow tier.
"""

from __future__ import annotations

import json
import re

import pytest

from clockwork import detect_video
from clockwork.store.postback import verify_signature
from clockwork.testing import Receiver, wait_for_job
from tests.conftest import SECRET


def wait(client, job_id, pred, timeout=120.0):
    return wait_for_job(lambda j: client.get(f"/jobs/{j}").json(), job_id, pred, timeout)


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_round_trip_equals_detect_video(make_client, samples_dir, detector):
    client = make_client()
    with Receiver() as rx:
        resp = client.post(
            "/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url, "sample_fps": 2}
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        assert (
            resp.json()["status_url"].endswith(f"/jobs/{job_id}")
            and resp.headers["Location"] == resp.json()["status_url"]
        )
        post = rx.wait_for(1)[0]
    doc = post["json"]
    assert doc["status"] == "succeeded" and doc["job_id"] == job_id
    assert verify_signature(SECRET, post["body"], post["headers"]["X-Clockwork-Signature"])
    expected = detect_video(samples_dir / "clock_moving_360p25.mp4", detector=detector, sample_fps=2).to_json()
    assert {k: v for k, v in doc.items() if k not in ("job_id", "status")} == json.loads(json.dumps(expected))
    assert client.get(f"/jobs/{job_id}/result").content == post["body"]
    status = wait(client, job_id, lambda s: s["postback"]["delivered"])
    assert status["progress"]["frames_done"] == status["progress"]["frames_total"] == doc["frames_total"]


@pytest.mark.slow
def test_every_frame_through_the_api_shows_the_other_views_at_the_requested_rate(make_client, samples_dir, detector):
    """A request's multiscale_fps reaches the detector's chunks (and the result): through the API as in-process."""
    client = make_client()
    resp = client.post(
        "/video-inference", json={"filename": "clock_60fps_480p.mp4", "sample_fps": 0, "multiscale_fps": 10}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    wait(client, job_id, lambda s: s["status"] == "succeeded", 300)
    doc = client.get(f"/jobs/{job_id}/result").json()
    expected = detect_video(samples_dir / "clock_60fps_480p.mp4", detector=detector, sample_fps=None, multiscale_fps=10)
    assert doc["multiscale_fps"] == 10 and doc["frames_processed"] == 240
    assert {k: v for k, v in doc.items() if k not in ("job_id", "status")} == json.loads(json.dumps(expected.to_json()))


def check(resp, status, words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and re.search(words, body["error"]), body
    return resp


def test_error_statuses(make_client, samples_dir, tmp_path):
    client = make_client()
    media = tmp_path / "media"
    (media / "notes.mp4").write_text("this is not a video\n" * 10)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes((samples_dir / "distractor_life_25.mp4").read_bytes())
    (media / "escape.mp4").symlink_to(outside)
    ok_url = "http://127.0.0.1:9/hook"

    def post(body):
        return client.post(
            "/video-inference",
            content=body if isinstance(body, str) else json.dumps(body),
            headers={"Content-Type": "application/json"},
        )

    check(
        client.post(
            "/video-inference", json={"filename": "a.mp4", "postback_url": ok_url}, headers={"Authorization": ""}
        ),
        401,
        "bearer token",
    )
    check(client.get("/jobs/x", headers={"Authorization": "Bearer wrong"}), 401, "bearer token")
    check(post("{not json"), 400, "malformed JSON")
    check(post("[1, 2]"), 400, "JSON object")
    check(post({"postback_url": ok_url}), 400, "filename: Field required")
    check(post({"filename": "x.mp4", "postback_url": ok_url, "min_score": "high"}), 400, "min_score")
    check(post({"filename": "x.mp4", "postback_url": ok_url, "labels": "clock"}), 400, "labels")
    check(post({"filename": "x.mp4", "postback_url": ok_url, "extra": 1}), 400, "extra")
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "labels": ["clok"]}),
        400,
        "did you mean 'clock'",
    )
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "views": ["zoom"]}),
        400,
        "views.0: Input should be 'full', 'zoomout' or 'tiles'",
    )
    check(post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "views": ["", "", ""]}), 400, "views.0")
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "multiscale_fps": 5e-324}),
        400,
        "multiscale_fps must be 0 \\(every frame\\) or from 0.01",
    )
    not_allowed = check(client.put("/jobs"), 405, "not allowed")
    assert set(not_allowed.headers["allow"].split(", ")) == {"GET", "HEAD"}  # Starlette answers HEAD wherever GET is
    check(post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "sample_fps": -1}), 400, "sample_fps")
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "multiscale_fps": -1}),
        400,
        "multiscale_fps",
    )
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": ok_url, "multiscale_fps": "fast"}),
        400,
        "multiscale_fps",
    )
    check(post({"filename": "clock_moving_360p25.mp4", "postback_url": "ftp://127.0.0.1/x"}), 400, "scheme")
    check(
        post({"filename": "clock_moving_360p25.mp4", "postback_url": "http://169.254.169.254/latest"}),
        400,
        "not in the allowlist|refused",
    )
    check(post({"filename": "../../etc/passwd", "postback_url": ok_url}), 403, "outside the media roots")
    check(post({"filename": "/etc/passwd", "postback_url": ok_url}), 403, "outside the media roots")
    check(post({"filename": "escape.mp4", "postback_url": ok_url}), 403, "outside the media roots")
    check(post({"filename": "missing.mp4", "postback_url": ok_url}), 404, "video not found")
    check(client.get("/jobs/0123456789abcdef"), 404, "unknown job")
    check(client.get("/jobs/0123456789abcdef/result"), 404, "unknown job")
    check(client.get("/no/such/route"), 404, "no route")
    check(client.delete("/video-inference"), 405, "not allowed")
    check(post(json.dumps({"filename": "a" * 70000, "postback_url": ok_url})), 413, "over the limit")
    resp = check(post({"filename": "notes.mp4", "postback_url": ok_url}), 422, "not a video file")
    assert resp.json()["reason"]
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}


def test_default_policy_refuses_loopback_and_metadata(make_client):
    client = make_client(postback_allow=[])
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/",
        "http://[::1]/x",
        "http://metadata.google.internal/",
    ):
        resp = client.post("/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": url})
        assert resp.status_code == 400 and ("refused" in resp.json()["error"] or "resolve" in resp.json()["error"]), (
            resp.text
        )


@pytest.mark.slow  # a full job or two interpreters: the slow tier
def test_corrupt_video_fails_the_job_and_posts_the_failure(make_client, samples_dir, tmp_path):
    client = make_client()
    data = (samples_dir / "clock_static_720p30.mp4").read_bytes()
    (tmp_path / "media" / "cut.mp4").write_bytes(data[: len(data) // 2])  # opens, then runs out
    with Receiver() as rx:
        resp = client.post("/video-inference", json={"filename": "cut.mp4", "postback_url": rx.url, "sample_fps": 10})
        assert resp.status_code == 202, resp.text
        doc = rx.wait_for(1)[0]["json"]
    assert doc["status"] == "failed" and "cut.mp4" in doc["error"] and "truncated" in doc["error"]
    status = client.get(f"/jobs/{doc['job_id']}").json()
    assert status["status"] == "failed" and status["error"] == doc["error"]
    assert client.get(f"/jobs/{doc['job_id']}/result").json()["error"] == doc["error"]


def test_idempotency_and_queue_limit(make_client):
    client = make_client(max_active_jobs=1)
    with Receiver() as rx:
        body = {"filename": "clock_static_720p30.mp4", "postback_url": rx.url, "sample_fps": 2}
        first = client.post("/video-inference", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 202
        again = client.post("/video-inference", json=body, headers={"Idempotency-Key": "k-1"})
        same_body = client.post("/video-inference", json=body)
        assert again.json()["job_id"] == same_body.json()["job_id"] == first.json()["job_id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        busy = client.post("/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url})
        assert busy.status_code == 429 and int(busy.headers["Retry-After"]) > 0
        rx.wait_for(1, job_id=first.json()["job_id"])
        assert len([p for p in rx.posts if p["json"]["job_id"] == first.json()["job_id"]]) == 1


@pytest.mark.slow  # a full detection at the defaults: the slow tier
def test_result_before_the_job_ends_is_409(make_client):
    client = make_client()
    with Receiver() as rx:
        body = {"filename": "clock_static_720p30.mp4", "postback_url": rx.url, "sample_fps": 5}
        job_id = client.post("/video-inference", json=body).json()["job_id"]
        # decoding 150 frames of 720p takes most of a second on the CPU: the job is not done when this GET lands
        check(client.get(f"/jobs/{job_id}/result"), 409, "no result yet")
        rx.wait_for(1, job_id=job_id)
        assert client.get(f"/jobs/{job_id}/result").status_code == 200


@pytest.mark.slow  # waits on real timers and several jobs: the slow tier
def test_dead_receiver_gets_the_postback_when_it_comes_back(make_client):
    from clockwork.testing import free_port

    client = make_client()
    rx = Receiver(port=free_port())  # not listening yet
    job_id = client.post(
        "/video-inference", json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url, "sample_fps": 2}
    ).json()["job_id"]
    status = wait(client, job_id, lambda s: s["postback"]["attempts"] >= 2)
    assert status["status"] == "succeeded" and not status["postback"]["delivered"]
    assert "Cannot connect" in status["postback"]["last_error"]
    with rx:
        rx.wait_for(1, job_id=job_id)
        status = wait(client, job_id, lambda s: s["postback"]["delivered"])
    assert status["postback"]["attempts"] >= 3 and status["postback"]["last_error"] is None


def test_read_time_reads_each_segment_and_the_result_keeps_it(make_client):
    from clockwork.timeread.clocktime import circular_error

    client = make_client()
    check(
        client.post(
            "/video-inference",
            json={"filename": "clock_static_720p30.mp4", "postback_url": "http://127.0.0.1:9/x", "read_time": "yes"},
        ),
        400,
        "read_time",
    )
    with Receiver() as rx:
        job_id = client.post(
            "/video-inference",
            json={"filename": "clock_static_720p30.mp4", "postback_url": rx.url, "sample_fps": 2, "read_time": True},
        ).json()["job_id"]
        doc = rx.wait_for(1, job_id=job_id)[0]["json"]
    [seg] = doc["segments"]
    assert circular_error(seg["clock_time"]["minutes"], 610) <= 1, seg  # the sample clock shows 10:10
    read = [d for f in doc["frame_data"] for d in f["detections"] if "clock_time" in d]
    assert 0 < len(read) <= 8
    # the catalog keeps the readings: the stored result is what GET /result serves
    assert client.get(f"/jobs/{job_id}/result").json()["segments"][0]["clock_time"] == seg["clock_time"]
