"""A bounded soak of the Serve app on a real Ray cluster: a steady stream of jobs, a hostile receiver,
one detector kill and one app restart. Every job ends accounted for (succeeded, or failed with a
reason) with one postback each to the good receiver, and the ingress and detector processes' memory
stays flat (within 20% after the warm-up).

CLOCKWORK_SOAK_S sets the length: 120 s in the slow tier (CI), ``make soak`` runs 600 s. It prints its figures.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from clockwork.testing import Receiver
from tests.test_postback import RawServer
from tests.test_serve_app import _deployer

pytestmark = pytest.mark.slow


@pytest.fixture
def deploy(serve_port, tmp_path, samples_dir):
    yield from _deployer(serve_port, tmp_path, samples_dir)


def _replica_pids(app_name: str) -> dict[str, int]:
    from ray.util.state import list_actors

    return {
        a.class_name.rsplit(":", 1)[-1] + ":" + a.actor_id[:6]: a.pid
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000, detail=True)
        if a.class_name.startswith(f"ServeReplica:{app_name}:")
    }


def test_soak_accounts_for_every_job_and_memory_stays_flat(deploy, tmp_path):
    import ray
    from ray import serve

    duration = float(os.environ.get("CLOCKWORK_SOAK_S", "120"))
    warmup = min(30.0, duration / 4)
    name, db = "soakapp", f"sqlite:///{tmp_path}/soak.sqlite"
    opts = {
        "postback_timeout_s": 2.0,
        "postback_max_attempts": 2,
        "postback_base_delay_s": 0.5,
        "postback_max_delay_s": 1.0,
    }
    app = deploy(name=name, database_url=db, **opts)

    def trickle(server, conn):  # headers that never end, one byte a second
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(30):
            conn.sendall(b"X")
            time.sleep(1)

    hostile = RawServer(trickle)
    samples: dict[str, list[tuple[float, int]]] = {}
    stop = threading.Event()

    def sample_memory():
        while not stop.is_set():
            try:
                for key, pid in _replica_pids(name).items():
                    samples.setdefault(f"{key}:{pid}", []).append((time.monotonic(), _rss(pid)))
            except Exception:
                pass  # a replica between lives
            stop.wait(3)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    jobs: dict[str, str] = {}  # job id -> "good" | "hostile"
    t0 = time.monotonic()
    killed = restarted = False
    with Receiver() as rx:
        sampler.start()
        i = 0
        while time.monotonic() - t0 < duration:
            kind = "hostile" if i % 4 == 3 else "good"
            url = rx.url if kind == "good" else f"http://127.0.0.1:{hostile.port}/h"
            body = {
                "filename": "clock_moving_360p25.mp4",
                "postback_url": url,
                "views": ["full"],
                "sample_fps": 1 + (i % 50) / 100,
            }
            try:
                resp = app.post(body)
            except Exception:
                resp = None  # the app is between lives: a client retries
            if resp is not None and resp.status_code == 202:
                jobs[resp.json()["job_id"]] = kind
                i += 1
            elapsed = time.monotonic() - t0
            if not killed and elapsed > duration / 3:
                for actor in [a for a in _replica_ids(name) if ":Detector" in a[0]]:
                    ray.kill(ray.get_actor(actor[1], namespace="serve"), no_restart=False)
                killed = True
            if not restarted and elapsed > 2 * duration / 3:
                serve.delete(name)
                app = deploy(name=name, database_url=db, **opts)
                restarted = True
            time.sleep(1.0)
        deadline = time.monotonic() + 300
        statuses = {}
        while time.monotonic() < deadline:
            statuses = {j: app.get(f"/jobs/{j}").json() for j in jobs}
            if all(
                s["status"] in ("succeeded", "failed") and (s["postback"]["delivered"] or s["postback"]["gave_up"])
                for s in statuses.values()
            ):
                break
            time.sleep(2)
        stop.set()
        posts = list(rx.posts)
    hostile.close()

    good = [j for j, kind in jobs.items() if kind == "good"]
    per_job = {j: sum(1 for p in posts if p["json"]["job_id"] == j) for j in good}
    ended = {j: s["status"] for j, s in statuses.items()}
    growth = {}
    for key, series in samples.items():
        steady = [rss for t, rss in series if t - series[0][0] >= warmup]
        if len(steady) >= 3:
            growth[key] = steady[-1] / steady[0]
    print(
        f"soak {duration:.0f} s: {len(jobs)} jobs ({len(good)} good receiver), ended {sorted(set(ended.values()))}, "
        f"postbacks to the good receiver {sum(per_job.values())}, memory growth after warm-up "
        + ", ".join(f"{k.split(':')[0]}={g:.2f}x" for k, g in sorted(growth.items()))
    )
    assert killed and restarted and len(jobs) >= duration / 4
    assert all(s in ("succeeded", "failed") for s in ended.values()), ended
    assert all(statuses[j]["error"] for j, s in ended.items() if s == "failed")
    assert all(n == 1 for n in per_job.values()), per_job
    assert all(statuses[j]["postback"]["gave_up"] for j, k in jobs.items() if k == "hostile")
    assert growth and all(g <= 1.2 for g in growth.values()), growth


def _rss(pid: int) -> int:
    """Resident memory of a local process (bytes), from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ProcessLookupError(pid)


def _replica_ids(app_name: str) -> list[tuple[str, str]]:
    from ray.util.state import list_actors

    return [
        (a.class_name, a.name)
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name.startswith(f"ServeReplica:{app_name}:")
    ]
