"""Load benchmark of the Serve app on this machine (not a test).

    python bench/serve_load.py [--clients 50] [--requests-per-client 2]

1. p50/p99 latency of POST /video-inference -> 202 with N concurrent clients (real HTTP on loopback);
2. frames/s of in-process ``detect_video`` over the sample library against frames/s through the API
   (all files posted at once, wall time to the last postback): the overhead of Serve.
Appends the run to docs/records/.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench._record import record
from clockwork import detect_video
from clockwork.detector import Detector
from clockwork.samples import load_manifest, write_samples
from clockwork.testing import Receiver, free_port


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests-per-client", type=int, default=2)
    args = ap.parse_args()

    import ray
    from ray import serve

    from serve_app.app import app_builder

    tmp = Path(tempfile.mkdtemp(prefix="clockwork-bench-"))
    samples = tmp / "samples"
    write_samples(samples)
    names = list(load_manifest(samples)["files"])

    detector = Detector(device="cpu")
    detect_video(samples / names[0], detector=detector, sample_fps=1)  # warm-up
    t = time.perf_counter()
    frames_local = sum(detect_video(samples / n, detector=detector).frames_processed for n in names)
    local_s = time.perf_counter() - t

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(app_builder({"media_roots": [str(samples)], "database_url": f"sqlite:///{tmp}/catalog.sqlite",
                           "postback_allow": ["127.0.0.0/8"], "max_active_jobs": 100000}), name="bench", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    with Receiver() as rx:
        # 2. throughput through the API: every sample, all frames, posted at once
        t = time.perf_counter()
        for n in names:
            assert requests.post(f"{base}/video-inference", json={"filename": n, "postback_url": rx.url}).status_code == 202
        posts = rx.wait_for(len(names), timeout=1800)
        api_s = time.perf_counter() - t
        frames_api = sum(p["json"]["frames_processed"] for p in posts)

        # 1. latency of POST -> 202 under concurrent clients (cheap jobs: 0.2 frames/s sampled)
        def client(i):
            out = []
            with requests.Session() as s:
                for j in range(args.requests_per_client):
                    body = {"filename": names[(i + j) % len(names)], "postback_url": f"{rx.url}?c={i}&r={j}", "sample_fps": 0.2}
                    t0 = time.perf_counter()
                    r = s.post(f"{base}/video-inference", json=body)
                    out.append((time.perf_counter() - t0, r.status_code))
            return out

        with cf.ThreadPoolExecutor(args.clients) as pool:
            results = [x for chunk in pool.map(client, range(args.clients)) for x in chunk]
        lat = [d for d, code in results if code == 202]
        codes = sorted({code for _, code in results})
    serve.shutdown()
    ray.shutdown()

    lines = [
        f"Sample library: {len(names)} files, {frames_local} frames; CPU replica (num_cpus 2), Ray local, 4 logical CPUs.", "",
        "| measurement | value |", "|---|---|",
        f"| POST /video-inference -> 202, {args.clients} concurrent clients, {len(results)} requests: p50 | {statistics.median(lat) * 1000:.1f} ms |",
        f"| same: p99 | {percentile(lat, 99) * 1000:.1f} ms |",
        f"| same: status codes | {codes} |",
        f"| in-process detect_video, all frames | {frames_local / local_s:.1f} frames/s ({local_s:.1f} s) |",
        f"| through the API (all files at once, to the last postback) | {frames_api / api_s:.1f} frames/s ({api_s:.1f} s) |",
        f"| API / in-process | {(frames_api / api_s) / (frames_local / local_s):.2f}x |",
    ]
    record("Serve: POST latency and API overhead (bench/serve_load.py)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
