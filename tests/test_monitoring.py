"""A real Prometheus and Pushgateway (Debian packages, which .ci/run installs) scrape a real Ray
cluster running the app and a batch job; the project's metric names must be there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from clockwork.testing import Receiver, free_port
from tests.test_deploy import REPO, dashboard_metric_names

pytestmark = pytest.mark.slow

# Series only a GPU produces (NVML gauges, NVDEC fallbacks) or the DCGM exporter serves.
GPU_ONLY = ("ray_clockwork_gpu_", "ray_clockwork_replica_gpu_", "ray_clockwork_decode_fallback", "DCGM_FI_")


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing: .ci/run installs the Debian package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus prometheus-pushgateway)")
    return path


@pytest.fixture
def prometheus(tmp_path, ray_cluster):
    pushgateway_port, prom_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{pushgateway_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(REPO / "monitoring" / rule) for rule in config["rule_files"]]  # the checked-in alerts
    for job in config["scrape_configs"]:  # the checked-in jobs, pointed at this test's processes
        job.pop("file_sd_configs", None)
        if job["job_name"] == "ray":
            job["static_configs"] = [{"targets": [u.split("//")[1].split("/")[0] for u in ray_cluster["metrics"]]}]
        elif job["job_name"] == "pushgateway":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{pushgateway_port}"]}]
        elif job["job_name"] == "dcgm":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{free_port()}"]}]  # no GPU here: scraped, down
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    procs.append(
        subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    base = f"http://127.0.0.1:{prom_port}"
    for _ in range(100):
        try:
            if requests.get(f"{base}/-/ready", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    yield {"url": base, "pushgateway": f"http://127.0.0.1:{pushgateway_port}"}
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def test_prometheus_sees_the_projects_metrics(prometheus, ray_cluster, serve_port, samples_dir, tmp_path):
    from ray import serve

    from serve_app.app import app_builder

    # a batch job that pushes to the Pushgateway
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(samples_dir / "clock_moving_360p25.mp4", media)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster["address"], "PUSHGATEWAY_URL": prometheus["pushgateway"]}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
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
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # a few API calls: two jobs, one whose receiver is dead (its postback gives up), errors
    serve.run(
        app_builder(
            {
                "media_roots": [str(samples_dir)],
                "database_url": f"sqlite:///{tmp_path}/api.sqlite",
                "postback_allow": ["127.0.0.0/8"],
                "postback_max_attempts": 1,
                "reaper_interval_s": 0.5,
            }
        ),
        name="metrics",
        route_prefix="/metrics-app",
    )
    api = f"http://127.0.0.1:{serve_port}/metrics-app"
    with Receiver() as rx:
        ok = requests.post(
            f"{api}/video-inference",
            json={"filename": "clock_moving_360p25.mp4", "postback_url": rx.url, "sample_fps": 5, "views": ["full"]},
        ).json()["job_id"]
        dead = requests.post(
            f"{api}/video-inference",
            json={
                "filename": "distractor_life_25.mp4",
                "sample_fps": 5,
                "views": ["full"],
                "postback_url": f"http://127.0.0.1:{free_port()}/x",
            },
        ).json()["job_id"]
        assert requests.get(f"{api}/jobs/nope").status_code == 404
        rx.wait_for(1, job_id=ok)
    deadline = time.time() + 60
    while requests.get(f"{api}/jobs/{dead}").json()["postback"]["gave_up"] is not True and time.time() < deadline:
        time.sleep(0.5)

    wanted = {n for n in dashboard_metric_names() if not n.startswith(GPU_ONLY)}
    deadline = time.time() + 120  # Ray reports every few seconds; Prometheus scrapes every second
    while True:
        names = set(requests.get(f"{prometheus['url']}/api/v1/label/__name__/values", timeout=10).json()["data"])
        missing = wanted - names
        if not missing or time.time() > deadline:
            break
        time.sleep(2)
    serve.delete("metrics")
    assert not missing, f"absent from Prometheus: {sorted(missing)}"
    up = requests.get(f"{prometheus['url']}/api/v1/query", params={"query": "up"}, timeout=10).json()["data"]["result"]
    assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= {"ray", "pushgateway"}


def test_alert_rules_pass_promtool_and_gauges_read_with_max():
    """The alert rules load into the real Prometheus tooling; the dashboard reads gauges every ingress
    replica reports with max (a sum would count each job once per replica)."""
    import json

    proc = subprocess.run(
        [binary("promtool"), "check", "rules", str(REPO / "monitoring" / "alerts.yml")], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "SUCCESS: 4 rules found" in proc.stdout, proc.stdout + proc.stderr
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    names = {
        r["alert"]
        for g in yaml.safe_load((REPO / "monitoring" / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert names == {
        "ClockworkPostbacksFailing",
        "ClockworkQueueGrowing",
        "ClockworkNoReadyDetector",
        "ClockworkDecodeFallbacks",
    }
    exprs = [
        t["expr"]
        for p in json.loads((REPO / "monitoring" / "grafana" / "clockwork.json").read_text())["panels"]
        for t in p.get("targets", [])
    ]
    for gauge in ("ray_clockwork_jobs", "ray_clockwork_queue_depth"):
        uses = [e for e in exprs if gauge + ")" in e or gauge + "[" in e or e.endswith(gauge)]
        assert uses and all(e.startswith("max") for e in uses), uses
