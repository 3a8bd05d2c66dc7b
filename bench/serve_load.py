"""Load benchmark of the Serve app on this machine (not a test).

    python -m bench.serve_load [--clients 50,300] [--requests-per-client 2] [--no-throughput]

1. p50/p99 latency of POST /video-inference -> 202 with N concurrent clients (real HTTP on loopback), for each N in
   one run, side by side;
2. frames/s of in-process ``detect_video`` over the sample library against frames/s through the API
   (all files posted at once, wall time to the last postback): the overhead of Serve (``--no-throughput`` skips it).
Writes the run to docs/records/.
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
from clockwork.detect.detector import Detector
from clockwork.samples import load_manifest, write_samples
from clockwork.testing import Receiver, free_port


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="50", help="concurrent clients, or a comma list measured one after the other")
    ap.add_argument("--no-throughput", action="store_true", help="only the POST latency")
    ap.add_argument("--requests-per-client", type=int, default=2)
    args = ap.parse_args()

    import ray
    from ray import serve

    from serve_app.app import app_builder

    tmp = Path(tempfile.mkdtemp(prefix="clockwork-bench-"))
    samples = tmp / "samples"
    write_samples(samples)
    names = list(load_manifest(samples)["files"])

    frames_local, local_s = 0, 0.0
    if not args.no_throughput:
        detector = Detector(device="cpu")
        detect_video(samples / names[0], detector=detector, sample_fps=1)  # warm-up
        t = time.perf_counter()
        frames_local = sum(detect_video(samples / n, detector=detector).frames_processed for n in names)
        local_s = time.perf_counter() - t

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        app_builder(
            {
                "media_roots": [str(samples)],
                "database_url": f"sqlite:///{tmp}/catalog.sqlite",
                "postback_allow": ["127.0.0.0/8"],
                "max_active_jobs": 100000,
            }
        ),
        name="bench",
        route_prefix="/",
    )
    base = f"http://127.0.0.1:{port}"
    rows = []
    with Receiver() as rx:
        frames_api, api_s = 0, 0.0
        if not args.no_throughput:  # 2. throughput through the API: every sample, all frames, posted at once
            t = time.perf_counter()
            for n in names:
                assert (
                    requests.post(f"{base}/video-inference", json={"filename": n, "postback_url": rx.url}).status_code
                    == 202
                )
            posts = rx.wait_for(len(names), timeout=1800)
            api_s = time.perf_counter() - t
            frames_api = sum(p["json"]["frames_processed"] for p in posts)

        # 1. latency of POST -> 202 under concurrent clients (cheap jobs: 0.2 frames/s sampled)
        for clients in [int(c) for c in args.clients.split(",")]:

            def client(i, clients=clients):
                out = []
                with requests.Session() as s:
                    for j in range(args.requests_per_client):
                        body = {
                            "filename": names[(i + j) % len(names)],
                            "postback_url": f"{rx.url}?n={clients}&c={i}&r={j}",
                            "sample_fps": 0.2,
                        }
                        t0 = time.perf_counter()
                        r = s.post(f"{base}/video-inference", json=body)
                        out.append((time.perf_counter() - t0, r.status_code))
                return out

            with cf.ThreadPoolExecutor(clients) as pool:
                results = [x for chunk in pool.map(client, range(clients)) for x in chunk]
            lat = [d for d, code in results if code == 202]
            rows += [
                f"| POST /video-inference -> 202, {clients} concurrent clients, {len(results)} requests: p50 | "
                f"{statistics.median(lat) * 1000:.1f} ms |",
                f"| same: p99 | {percentile(lat, 99) * 1000:.1f} ms |",
                f"| same: status codes | {sorted({code for _, code in results})} |",
            ]
            print("\n".join(rows[-3:]), flush=True)
    serve.shutdown()
    ray.shutdown()

    lines = [
        f"Sample library: {len(names)} files; CPU replica (num_cpus 2), Ray local, 4 logical CPUs.",
        "",
        "| measurement | value |",
        "|---|---|",
        *rows,
    ]
    if not args.no_throughput:
        lines += [
            f"| in-process detect_video, all frames | {frames_local / local_s:.1f} frames/s ({local_s:.1f} s) |",
            f"| through the API (all files at once, to the last postback) | {frames_api / api_s:.1f} frames/s "
            f"({api_s:.1f} s) |",
            f"| API / in-process | {(frames_api / api_s) / (frames_local / local_s):.2f}x |",
        ]
    record("Serve: POST latency and API overhead (bench/serve_load.py)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
