"""The Serve app against a real local Ray cluster, real HTTP on loopback and a real postback receiver.

The HTTP contract itself (every error status, idempotency, the queue limit, a dead receiver) is tested
in-process in test_api.py; here is what needs Ray: the handles and the proxy, batching across
requests, a Ray-wrapped VideoError, a killed replica and an app restart. Tests that do not kill or
restart the app share one deployment per module.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
import uuid

import pytest
import requests

from clockwork import detect_video
from clockwork.store.postback import verify_signature
from clockwork.testing import Receiver, wait_for_job
from clockwork.timeline.options import DetectOptions

pytestmark = pytest.mark.slow

SECRET = "test-signing-key"
TOKEN = "test-api-token"


class App:
    """One deployed copy of the app under its own route prefix and its own catalog."""

    def __init__(self, port: int, name: str, token: str | None):
        self.name = name
        self.base = f"http://127.0.0.1:{port}/{name}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, body, **kw):
        headers = {**self.headers, **kw.pop("headers", {})}
        if isinstance(body, (bytes, str)):
            return requests.post(
                f"{self.base}/video-inference",
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=30,
                **kw,
            )
        return requests.post(f"{self.base}/video-inference", json=body, headers=headers, timeout=30, **kw)

    def get(self, path):
        return requests.get(f"{self.base}{path}", headers=self.headers, timeout=30)

    def wait(self, job_id, pred, timeout=180.0):
        return wait_for_job(lambda j: self.get(f"/jobs/{j}").json(), job_id, pred, timeout, interval=0.2)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-media")


@pytest.fixture(scope="module")
def deploy_module(serve_port, media, samples_dir):
    yield from _deployer(serve_port, media, samples_dir)


@pytest.fixture
def deploy(serve_port, media, samples_dir):
    """A fresh app for a test that kills or restarts it."""
    yield from _deployer(serve_port, media, samples_dir)


@pytest.fixture(scope="module")
def shared(deploy_module) -> App:
    return deploy_module()


def _deployer(serve_port, tmp_path, samples_dir):
    from ray import serve

    from serve_app.app import app_builder

    names = []

    def make(*, name=None, token=TOKEN, database_url=None, **args) -> App:
        name = name or f"app{uuid.uuid4().hex[:8]}"
        full = {
            "media_roots": [str(samples_dir), str(tmp_path / "media")],
            "database_url": database_url or f"sqlite:///{tmp_path}/{name}.sqlite",
            "postback_allow": ["127.0.0.0/8"],
            "postback_secret": SECRET,
            "api_token": token,
            "postback_base_delay_s": 0.3,
            "postback_max_delay_s": 1.0,
            "lease_s": 4,
            "reaper_interval_s": 0.5,
            **args,
        }
        (tmp_path / "media").mkdir(exist_ok=True)
        serve.run(app_builder(full), name=name, route_prefix=f"/{name}")
        names.append(name)
        return App(serve_port, name, token)

    yield make
    for name in names:
        serve.delete(name)


def strip_job(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("job_id", "status")}


def test_round_trip_equals_clockwork_detect(shared, samples_dir, detector):
    app = shared
    names = ["clock_moving_360p25.mp4", "clock_portrait_2997.mp4", "distractor_life_25.mp4"]
    with Receiver() as rx:
        jobs = {}
        for name in names:
            t = time.perf_counter()
            resp = app.post(
                {"filename": name, "postback_url": rx.url, "sample_fps": 10, "views": ["full"], "read_time": True}
            )
            assert resp.status_code == 202, resp.text
            assert time.perf_counter() - t < 5
            body = resp.json()
            assert body["status_url"] == f"/{app.name}/jobs/{body['job_id']}"  # relative, under the route prefix
            jobs[body["job_id"]] = name
        posts = rx.wait_for(len(names))
    for post in posts:
        doc = post["json"]
        name = jobs[doc["job_id"]]
        assert doc["status"] == "succeeded"
        # signed: HMAC-SHA256 over timestamp + raw body
        assert verify_signature(SECRET, post["body"], post["headers"]["X-Clockwork-Signature"])
        assert not verify_signature("wrong", post["body"], post["headers"]["X-Clockwork-Signature"])
        expected = detect_video(
            samples_dir / name, detector=detector, sample_fps=10, views=["full"], read_time=True
        ).to_json()
        assert strip_job(doc) == json.loads(json.dumps(expected))
        # GET /jobs/{id}/result is byte for byte what was posted back
        assert app.get(f"/jobs/{doc['job_id']}/result").content == post["body"]
        status = app.get(f"/jobs/{doc['job_id']}").json()
        assert status["status"] == "succeeded"
        assert status["progress"]["frames_done"] == status["progress"]["frames_total"] == doc["frames_total"]
        assert {
            k: status["postback"][k]
            for k in ("url", "attempts", "delivered", "gave_up", "last_error", "next_attempt_at")
        } == {
            "url": rx.url,
            "attempts": 1,
            "delivered": True,
            "gave_up": False,
            "last_error": None,
            "next_attempt_at": None,
        }
        assert [h["status"] for h in status["postback"]["history"]] == [200]
        assert (
            post["headers"]["X-Clockwork-Delivery"] == f"{doc['job_id']}.1"
            and post["headers"]["X-Clockwork-Job"] == doc["job_id"]
        )
        assert status["timings"]["started_at"] and status["timings"]["finished_at"]


def test_round_trip_on_postgresql(deploy, postgres_url):
    from clockwork.store.catalog import Base, Catalog

    cat = Catalog(postgres_url)
    Base.metadata.drop_all(cat.engine)
    cat.close()
    app = deploy(database_url=postgres_url)
    with Receiver() as rx:
        job_id = app.post({"filename": "clock_static_720p30.mp4", "postback_url": rx.url, "sample_fps": 5}).json()[
            "job_id"
        ]
        doc = rx.wait_for(1)[0]["json"]
    assert doc["job_id"] == job_id and doc["status"] == "succeeded" and len(doc["segments"]) == 1
    cat = Catalog(postgres_url)
    assert cat.counts_by_status()["succeeded"] == 1
    cat.close()


def scrape(urls: list[str], name: str) -> dict[str, float]:
    """Series of ``name`` from every node's Ray metrics endpoint."""
    text = "\n".join(requests.get(url, timeout=10).text for url in urls)
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_concurrent_requests_are_batched_together(deploy, ray_cluster):
    names = [
        "clock_static_720p30.mp4",
        "clock_moving_360p25.mp4",
        "clock_60fps_480p.mp4",
        "distractor_fractal_30.mp4",
        "clock_static_720p30_reupload.mp4",
        "distractor_life_25.mp4",
    ]
    # Every chunk decodes at once (a replica's default is 2, for NVDEC's memory), in packs of 4 frames, and a
    # batch waits up to 250 ms for more packs: with the defaults (8 frames, 20 ms) these short videos' packs met in
    # 3 of 16 batches on this 2-core machine, and in none of 75 once under CI's load.
    app = deploy(detector={"decoders": len(names), "frames_per_call": 4, "batch_wait_timeout_s": 0.25})
    with Receiver() as rx, cf.ThreadPoolExecutor(len(names)) as pool:
        list(
            pool.map(
                lambda n: app.post({"filename": n, "postback_url": rx.url, "sample_fps": 10, "views": ["full"]}), names
            )
        )
        rx.wait_for(len(names), timeout=300)
    # Ray exports the replica's histogram on its Prometheus endpoint after its reporting interval.
    deadline = time.time() + 90
    while time.time() < deadline:
        # this app's replica only: earlier tests' apps export the same histogram
        series = {
            k: v
            for k, v in scrape(ray_cluster["metrics"], "ray_clockwork_batch_requests").items()
            if f'application="{app.name}"' in k
        }
        count = sum(v for k, v in series.items() if k.startswith("ray_clockwork_batch_requests_count"))
        single = sum(v for k, v in series.items() if 'le="1.0"' in k)
        if count and count > single:
            break
        time.sleep(2)
    print(f"batches {count:.0f}, of one request {single:.0f}")
    assert count > single, f"no inference batch merged more than one request: {series}"


def test_corrupt_video_fails_the_job_and_posts_the_failure(shared, samples_dir, media):
    """The detector replica raises CorruptVideoError; Ray wraps it, and the job still fails with its message."""
    app = shared
    data = (samples_dir / "clock_static_720p30.mp4").read_bytes()
    (media / "media" / "cut.mp4").write_bytes(data[: len(data) // 2])  # opens, then runs out
    with Receiver() as rx:
        resp = app.post({"filename": "cut.mp4", "postback_url": rx.url, "sample_fps": 10})
        assert resp.status_code == 202, resp.text
        doc = rx.wait_for(1)[0]["json"]
    assert doc["status"] == "failed" and "cut.mp4" in doc["error"] and "truncated" in doc["error"]
    status = app.get(f"/jobs/{doc['job_id']}").json()
    assert status["status"] == "failed" and status["error"] == doc["error"]


def _detector_actors(app_name: str):
    from ray.util.state import list_actors

    return [
        a
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name == f"ServeReplica:{app_name}:Detector"
    ]


def test_killed_detector_replica_mid_job(deploy):
    import ray

    app = deploy()
    with Receiver() as rx:
        body = {
            "filename": "clock_static_720p30.mp4",
            "postback_url": rx.url,
            "sample_fps": 0,
            "views": ["full"],
        }  # 0: every frame
        job_id = app.post(body).json()["job_id"]
        app.wait(job_id, lambda s: s["progress"]["frames_done"] > 0 or s["status"] != "queued")
        actors = _detector_actors(app.name)
        assert actors
        for actor in actors:
            ray.kill(ray.get_actor(actor.name, namespace="serve"), no_restart=False)
        doc = rx.wait_for(1, job_id=job_id, timeout=240)[0]["json"]
    assert doc["status"] == "succeeded", doc
    assert doc["frames_processed"] == 180 and len(doc["segments"]) == 1


def test_app_restart_with_job_in_flight(deploy, tmp_path):
    from ray import serve

    db = f"sqlite:///{tmp_path}/restart.sqlite"
    app = deploy(name="restartapp", database_url=db)
    with Receiver() as rx:
        job_id = app.post({"filename": "clock_static_720p30.mp4", "postback_url": rx.url}).json()["job_id"]
        app.wait(job_id, lambda s: s["status"] == "running")
        serve.delete("restartapp")  # the whole app goes away with the job in flight
        assert not rx.posts
        app = deploy(name="restartapp", database_url=db)
        doc = rx.wait_for(1, job_id=job_id, timeout=240)[0]["json"]
        status = app.get(f"/jobs/{job_id}").json()
    assert doc["status"] == "succeeded" and status["attempts"] == 2 and status["postback"]["delivered"]
    assert len([p for p in rx.posts if p["json"]["job_id"] == job_id]) == 1


def test_a_replica_decodes_at_most_its_decoders_chunks_at_once(serve_port, samples_dir):
    """A Detector replica with ``decoders=1`` given two chunks at once decodes them one after the other: the second
    stream's first pack comes after the first stream's last item, and both streams are whole."""
    import threading

    from ray import serve

    from serve_app.detector import DetectorDeployment

    name = f"decoders{uuid.uuid4().hex[:6]}"
    handle = serve.run(
        DetectorDeployment.options(ray_actor_options={"num_cpus": 1, "num_gpus": 0}).bind(
            {"device": "cpu", "decoders": 1, "frames_per_call": 4}
        ),
        name=name,
        route_prefix=None,
    )
    path = str(samples_dir / "clock_static_720p30.mp4")
    events, lock = [], threading.Lock()

    def consume(tag):
        options = DetectOptions(min_score=0.5, scan=False, sample_fps=5, views=("full",), read_time=False)
        stream = handle.options(stream=True).detect_chunk.remote(path, 0.0, None, options=options, rate=5)
        for item in stream:
            with lock:
                events.append((tag, bool(item.get("done")), item.get("processed", 0)))

    try:
        threads = [threading.Thread(target=consume, args=(tag,)) for tag in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
    finally:
        serve.delete(name)
    tags = [tag for tag, _, _ in events]
    first = tags[0]
    switch = tags.index("b" if first == "a" else "a")
    assert all(tag == first for tag in tags[:switch]) and all(tag != first for tag in tags[switch:]), tags
    assert events[switch - 1][1], "the second chunk started before the first one had finished"
    for tag in "ab":  # each stream: every sampled frame (6 s at 5 a second), then its end
        mine = [e for e in events if e[0] == tag]
        assert sum(p for _, _, p in mine) == 30 and mine[-1][1]


def test_cancel_stops_the_chunks_and_a_job_posted_after_it_runs_at_once(deploy, media):
    """A long every-frame job cancelled mid-run frees the detector: a small job posted after the cancel takes about
    as long as it takes alone (the cancelled job had minutes of chunks left)."""
    from clockwork.video import ffmpeg

    (media / "media").mkdir(exist_ok=True)
    ffmpeg.run(
        [
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25:d=240",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "250",
            "-pix_fmt",
            "yuv420p",
            str(media / "media" / "long-cancel.mp4"),
        ]
    )
    app = deploy()

    def quick(rate: float) -> float:
        t0 = time.monotonic()
        job = app.post(
            {"filename": "clock_moving_360p25.mp4", "sample_fps": rate, "views": ["full"], "read_time": False}
        )
        assert job.status_code == 202, job.text
        assert app.wait(job.json()["job_id"], lambda s: s["status"] in ("succeeded", "failed"))["status"] == "succeeded"
        return time.monotonic() - t0

    alone = quick(2)
    long_id = app.post(
        {
            "filename": "long-cancel.mp4",
            "sample_fps": 0,
            "views": ["full", "tiles"],
            "multiscale_fps": 0,
            "read_time": False,
        }
    ).json()["job_id"]
    running = app.wait(long_id, lambda s: s["progress"]["frames_done"] > 0)
    rate = running["progress"]["frames_done"]
    gone = requests.delete(f"{app.base}/jobs/{long_id}", headers=app.headers, timeout=30)
    assert gone.status_code == 202, gone.text
    after = quick(3)  # another body: not the same job again
    status = app.get(f"/jobs/{long_id}").json()
    print(
        f"\ncancel: the small job alone {alone:.1f} s, posted after cancelling a 240 s every-frame job {after:.1f} s "
        f"(the cancelled job had done {status['progress']['frames_done']} of 6000 frames; {rate} when cancelled)"
    )
    assert status["status"] == "cancelled"
    # the cancelled job's chunks (about 6000 frames in 5 views, minutes of CPU) no longer hold the detector
    assert after < alone + 20, (alone, after)
