"""`make demo`: the main job on the embedded default model and the sample library, end to end.

1. renders the sample library (var/samples) with its ground truth;
2. starts a local Ray and the Serve app, POSTs every sample video to /video-inference, and receives
   the signed postbacks on a local receiver;
3. prints the segments found beside the ground truth (within 0.5 s at each end, none in distractors);
4. runs the split and join jobs on that catalog: a random remix (var/remix/out.mp4), then one that keeps the
   time of day (var/the-clock/out.mp4): each clip placed where the remix's own clock shows the time its
   clock reads, black cards showing the time between them. Each is verified with ffprobe and has an .html.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import requests

from clockwork.cli import hms
from clockwork.samples import load_manifest, write_samples
from clockwork.store.postback import verify_signature
from clockwork.testing import Receiver, free_port

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
SAMPLES = VAR / "samples"
TOLERANCE_S = 0.5
SECRET = "demo-secret"


def main() -> int:
    import ray
    from ray import serve

    from jobs import join, split
    from serve_app.app import app_builder

    write_samples(SAMPLES)
    manifest = load_manifest(SAMPLES)
    db = VAR / "demo-catalog.sqlite"
    for p in VAR.glob("demo-catalog.sqlite*"):
        p.unlink()
    shutil.rmtree(VAR / "slices", ignore_errors=True)

    ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        app_builder(
            {
                "media_roots": [str(SAMPLES)],
                "database_url": f"sqlite:///{db}",
                "postback_allow": ["127.0.0.0/8"],
                "postback_secret": SECRET,
            }
        ),
        name="clockwork",
        route_prefix="/",
    )
    print(f"Serve app up on http://127.0.0.1:{port}; posting {len(manifest['files'])} videos")
    t0 = time.time()
    with Receiver() as rx:
        jobs = {}
        for name in manifest["files"]:
            resp = requests.post(
                f"http://127.0.0.1:{port}/video-inference",
                json={"filename": name, "postback_url": rx.url, "read_time": True},
            )
            resp.raise_for_status()
            jobs[resp.json()["job_id"]] = name
        posts = rx.wait_for(len(jobs), timeout=1800)
    print(
        f"{len(posts)} postbacks received in {time.time() - t0:.1f} s, all signed: "
        f"{all(verify_signature(SECRET, p['body'], p['headers']['X-Clockwork-Signature']) for p in posts)}\n"
    )
    failures = 0
    for post in sorted(posts, key=lambda p: jobs[p["json"]["job_id"]]):
        doc = post["json"]
        name = jobs[doc["job_id"]]
        found = [(s["start_s"], s["end_s"]) for s in doc.get("segments", []) if s["label"] == "clock"]
        truth = manifest["files"][name]["clock_intervals"]
        ok = (
            doc["status"] == "succeeded"
            and len(found) == len(truth)
            and all(
                abs(a - c) <= TOLERANCE_S and abs(b - d) <= TOLERANCE_S
                for (a, b), (c, d) in zip(found, truth, strict=True)
            )
        )
        failures += not ok
        print(f"{'ok  ' if ok else 'MISS'} {name}")
        print(f"     truth: {', '.join(f'{hms(a)}-{hms(b)}' for a, b in truth) or 'no clock'}")
        print(f"     found: {', '.join(f'{hms(a)}-{hms(b)}' for a, b in found) or 'no clock'}")
    print(f"\n{len(posts) - failures}/{len(posts)} files match their ground truth within {TOLERANCE_S} s\n")
    serve.shutdown()

    rc = split.main(["--database-url", f"sqlite:///{db}", "--out", str(VAR / "slices")])
    if rc != 0:
        return rc
    rc = join.main(["--database-url", f"sqlite:///{db}", "--out", str(VAR / "remix" / "out.mp4"), "--seed", "1"])
    if rc == 0:
        print("\nA remix that keeps the time of day (The Clock):")
        rc = join.main(
            [
                "--database-url",
                f"sqlite:///{db}",
                "--out",
                str(VAR / "the-clock" / "out.mp4"),
                "--order",
                "time-of-day",
                "--per-source",
                "2",
            ]
        )
    ray.shutdown()
    print(
        "\nSee the jobs, the videos with their boxes and the remix in a browser:\n"
        f"  .venv/bin/clockwork serve --media-root {SAMPLES.relative_to(ROOT)} --database-url sqlite:///{db.relative_to(ROOT)}\n"
        "  then open http://127.0.0.1:8000/ui"
    )
    return 1 if failures or rc else 0


if __name__ == "__main__":
    sys.exit(main())
