"""`clockwork serve` as a user runs it, while another Ray cluster runs on this machine (the test
cluster): it starts a Ray of its own instead of joining or crashing, answers /readyz once its detector
runs, serves a job, and exposes its metrics on the documented port."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from clockwork.testing import free_port, wait_for_job

pytestmark = pytest.mark.slow


def test_clockwork_serve_beside_a_running_cluster(ray_cluster, samples_dir, tmp_path):
    port, metrics = free_port(), free_port()
    cmd = [
        str(Path(sys.executable).with_name("clockwork")),
        "serve",
        "--media-root",
        str(samples_dir),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics),
        "--device",
        "cpu",
        "--database-url",
        f"sqlite:///{tmp_path}/c.sqlite",
    ]
    log = open(tmp_path / "serve.log", "w+")  # a file, not a pipe: a full pipe would stall the server's logging

    def log_tail() -> str:
        return (tmp_path / "serve.log").read_text()[-3000:]

    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        ready = None
        while time.time() < deadline and proc.poll() is None:
            try:
                ready = requests.get(
                    f"{base}/readyz", timeout=15
                )  # longer than the server's own 5 s wait for a replica
                if ready.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        assert ready is not None and ready.json() == {"status": "ready"}
        job = requests.post(
            f"{base}/video-inference",
            json={"filename": "clock_moving_360p25.mp4", "sample_fps": 1, "views": ["full"]},
            timeout=30,
        ).json()
        status = wait_for_job(
            lambda j: requests.get(f"{base}/jobs/{j}", timeout=10).json(),
            job["job_id"],
            lambda s: s["status"] in ("succeeded", "failed"),
            timeout=120,
        )
        assert status["status"] == "succeeded", status
        assert requests.get(f"{base}/ui/jobs", timeout=30).status_code == 200  # the pages are counted too
        seen: set[str] = set()  # what any scrape showed: a series may come and go between scrapes
        for _ in range(60):  # Ray's exporter publishes within a few seconds (more on a loaded machine)
            text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
            seen |= {w for w in ("ray_clockwork_http_requests_total", 'route="/ui/jobs"') if w in text}
            if len(seen) == 2:
                break
            time.sleep(1)
        assert seen == {"ray_clockwork_http_requests_total", 'route="/ui/jobs"'}, (seen, log_tail())
        # --host is loopback (the default): the API listens on loopback only (Ray's metrics exporter: docs/API.md)
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.split("\n")
        local = {
            line.split()[3].rsplit(":", 1)[0]
            for line in listening
            if line.strip() and line.split()[3].endswith(f":{port}")
        }
        assert local == {"127.0.0.1"}, local
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "serve.log").read_text()
    assert "on a Ray of its own" in out and f"127.0.0.1:{metrics}/metrics" in out, out[-3000:]
    # SIGTERM stops it with one line and status 0, not Ray's stack dump
    assert proc.returncode == 0 and "clockwork serve: SIGTERM received; stopping" in out, out[-3000:]
    assert "*** SIGTERM received" not in out and "Traceback" not in out, out[-3000:]
