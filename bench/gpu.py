"""Four-way GPU benchmark, in one run on one card (run it on the GPU machine):

    python bench/gpu.py --videos DIR [--copies 8] [--replicas 4] [--gpus 1] [--out FILE]

On the same set of 1080p H.264 files (made with libx264 on a CPU machine; the GPU machine cannot encode):
1. seed-style loop: cv2.VideoCapture, one frame at a time, same model on the GPU, fp32, batch 1;
2. Ray Data: CPU decoding in tasks, then map_batches into a GPU actor pool (fp16, batch 64);
3. ours: the Serve app through its HTTP API, all files posted at once, every frame (sample_fps 0) through the
   default views (the zoomed-out view and the tiles on ``--multiscale-fps`` frames a second), YOLOv3-tiny at 416;
4. decode ceiling: NVDEC decoding alone (PyNvVideoCodec, RGB on the GPU) with 1, 7 and 14 sessions;
5. (diagnostic) the core GPU pipeline without Serve: NVDEC + GPU letterbox + one shared model, in threads.
6. (stage "scan") ours in scan mode, the API's default: video seconds covered per second.
Reports frames/s, mean GPU and decoder utilisation (NVML), and the ratios 3/1, 3/2 and 3/4.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import torch

from bench._record import record
from clockwork.detect.detector import Detector
from clockwork.settings import DETECT
from clockwork.testing import Receiver, free_port


class ProcessCpu:
    """Mean CPU (% of one core) of the Serve processes by role, from psutil: tells whether a Python process
    (one ingress, the proxy) is what holds the pipeline back when the GPUs are not busy."""

    ROLES = {"Ingress": "ServeReplica:bench:Ingress", "Detector": "ServeReplica:bench:Detector", "proxy": "ProxyActor"}

    def __init__(self):
        import ray  # noqa: F401, I001  (first: Ray puts its own psutil on the path)
        import psutil

        self.psutil = psutil
        self.procs: dict[int, tuple[str, object]] = {}
        self.samples: dict[int, list[float]] = {}

    def sample(self) -> None:
        for p in self.psutil.process_iter(["pid", "cmdline"]):
            if p.pid in self.procs:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            role = next((r for r, tag in self.ROLES.items() if tag in cmd), None)
            if role:
                p.cpu_percent(None)  # the first call only starts the count
                self.procs[p.pid] = (role, p)
        for pid, (_, p) in list(self.procs.items()):
            try:
                self.samples.setdefault(pid, []).append(p.cpu_percent(None))
            except self.psutil.Error:
                self.procs.pop(pid)

    def summary(self) -> str:
        by_role: dict[str, list[float]] = {}
        for pid, vals in self.samples.items():
            if pid in self.procs and len(vals) > 1:
                by_role.setdefault(self.procs[pid][0], []).append(float(np.mean(vals[1:])))
        return "; ".join(
            f"{role} x{len(v)}: busiest {max(v):.0f}%, mean {np.mean(v):.0f}% of a core"
            for role, v in sorted(by_role.items())
        )


class Sampler:
    """Mean GPU and decoder utilisation over a stage (NVML, every 0.25 s); the decoders' also by tenth of the stage,
    which shows what the start and the end of a run (the last chunks, fewer than the decoders) cost."""

    def __init__(self, gpus: int):
        from clockwork.gpu_stats import GpuStats

        self.stats = [GpuStats(i) for i in range(gpus)]
        self.samples: list[list[tuple[float, float]]] = [[] for _ in range(gpus)]
        self.cpu = ProcessCpu()
        self._stop = threading.Event()

    def __enter__(self):
        def loop():
            n = 0
            while not self._stop.wait(0.25):
                for i, s in enumerate(self.stats):
                    r = s.read()
                    self.samples[i].append((r["gpu_util"], r["dec_util"]))
                n += 1
                if n % 4 == 0:  # once a second
                    self.cpu.sample()

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def summary(self) -> str:
        parts = []
        for i, s in enumerate(self.samples):
            if s:
                a = np.array(s)
                tenths = " ".join(f"{x.mean():.0f}" for x in np.array_split(a[:, 1], 10) if len(x))
                parts.append(
                    f"gpu{i} util {a[:, 0].mean():.0f}%, dec {a[:, 1].mean():.0f}% (by tenth of the stage: {tenths})"
                )
        return "; ".join(parts)


class Mps:
    """NVIDIA's Multi-Process Service for the run: the detector replicas' kernels then share the GPU at once instead
    of taking turns (time-slicing between processes). Started before Ray, on its default pipe directory, and
    stopped at the end; the card's settings (compute mode) are not touched."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:  # MPS's default pipe directory (/tmp/nvidia-mps): every CUDA process of this user finds it
            import subprocess

            # A daemon an earlier run told to quit still runs until its clients are gone, and turns new clients away
            # (they then time-slice without MPS: half the frames/s): end it first, and wait.
            # The control client can hang on a daemon in a bad state (about 160 s seen): give it 15 s.
            try:
                subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", capture_output=True, timeout=15)
            except subprocess.TimeoutExpired:
                pass
            for _ in range(100):
                if subprocess.run(["pgrep", "-f", "nvidia-cuda-mps"], capture_output=True).returncode:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(
                    "an earlier MPS daemon does not quit (`pgrep -af nvidia-cuda-mps` names it); end it by hand "
                    "(`echo quit | nvidia-cuda-mps-control`, else kill it) before measuring"
                )
            subprocess.run(["nvidia-cuda-mps-control", "-d"], check=True)
        return self

    @staticmethod
    def serving() -> bool:
        """Whether an MPS server runs (it starts with the first client): stage 3's note says so."""
        import subprocess

        return subprocess.run(["pgrep", "-f", "nvidia-cuda-mps-server"], capture_output=True).returncode == 0

    def __exit__(self, *exc):
        if (
            self.enabled
        ):  # "quit" waits for every client, this process included: asked in the background, it ends after us
            import subprocess

            subprocess.Popen(
                ["sh", "-c", "echo quit | nvidia-cuda-mps-control"],
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def seed_style(path: Path, max_frames: int) -> tuple[int, float]:
    import cv2

    det = Detector(device="cuda", half=False, micro_batch=1)
    cap = cv2.VideoCapture(str(path))
    n, t = 0, time.perf_counter()
    while n < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        det.detect([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)], min_score=DETECT.min_score, labels=list(DETECT.labels))
        n += 1
    torch.cuda.synchronize()
    return n, time.perf_counter() - t


def ray_data(files: list[Path], replicas: int) -> tuple[int, float]:
    import cv2
    import ray

    def decode(row):
        from clockwork.detect.boxes import letterbox

        cap = cv2.VideoCapture(row["path"])
        out = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append({"image": letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 416)[0]})
        return out

    class GpuDetector:
        def __init__(self):
            self.det = Detector(device="cuda", half=True)

        def __call__(self, batch):
            x = self.det.normalise(torch.from_numpy(np.stack(batch["image"])).cuda(non_blocking=True))
            raw = self.det.infer(x)
            return {"n": np.full(len(raw), 1)}

    t = time.perf_counter()
    ds = ray.data.from_items([{"path": str(p)} for p in files]).flat_map(decode, num_cpus=1)
    ds = ds.map_batches(GpuDetector, batch_size=64, num_gpus=1 / replicas, concurrency=replicas)
    n = int(sum(b["n"].sum() for b in ds.iter_batches(batch_size=None)))
    return n, time.perf_counter() - t


def ours(
    files: list[Path],
    media: Path,
    replicas: int,
    gpus: int,
    port: int,
    chunk_s: float,
    body: dict | None = None,
    ingress: int = 1,
    sessions: int = 16,
    capped: bool = False,
    spy: tuple[float, Path] | None = None,
    reuse: bool = DETECT.nvdec_reuse,
    stream: bool = DETECT.nvdec_stream,
) -> tuple[int, float, str, str, float]:
    """Every file through the HTTP API at once; ``body`` adds request fields (default: every frame, the default
    views); about ``sessions`` decoders a GPU. ``spy`` (seconds, folder): py-spy records two detector replicas
    that long, from 15 s into the timed run. Returns frames examined, seconds, a note, NVML utilisation and the
    seconds of video covered."""
    body = {"sample_fps": 0} if body is None else body
    from ray import serve

    from serve_app.app import app_builder

    decoders = -(-sessions // replicas)  # about `sessions` decoder sessions a GPU whatever the replica count
    tmp = Path(tempfile.mkdtemp())
    serve.run(
        app_builder(
            {
                "media_roots": [str(media)],
                "database_url": f"sqlite:///{tmp}/c.sqlite",
                "postback_allow": ["127.0.0.0/8"],
                "detector_num_gpus": 1 / replicas,
                "detector_replicas": replicas * gpus,
                "ingress_replicas": ingress,
                "detector_num_cpus": max(1, min(2, ((os.cpu_count() or 4) - 2) // (replicas * gpus))),
                "chunk_s": chunk_s,
                "max_chunks_in_flight": 16,
                # capped: chunks wait in the API and go to the first replica with a free decoder (README, Sizing)
                **(
                    {"max_chunks_total": replicas * gpus * decoders, "detector_max_ongoing_requests": decoders + 1}
                    if capped
                    else {}
                ),
                "detector": {
                    "frames_per_call": 32,
                    "max_batch_frames": 256,
                    "decoders": decoders,
                    "nvdec_reuse": reuse,
                    "nvdec_stream": stream,
                },
            }
        ),
        name="bench",
        route_prefix="/",
    )
    base = f"http://127.0.0.1:{port}"
    warm_file = warm_clip(files[0], media)
    with Receiver() as rx:
        # warm-up: one short job per replica so model load and cuDNN autotune are not timed; each on the first
        # seconds of the film, one chunk (a sparse rate over a whole film is one decoder open per chunk: minutes),
        # at a rate distinct per job so the API does not merge them
        warm = [
            requests.post(
                f"{base}/video-inference",
                json={"filename": warm_file.name, "postback_url": rx.url, "sample_fps": 10 + i * 0.01},
            ).json()["job_id"]
            for i in range(replicas * gpus)
        ]
        for j in warm:
            rx.wait_for(1, job_id=j, timeout=300)
        rx.posts.clear()
        mps_serving = Mps.serving()
        with Sampler(gpus) as sampler:
            t = time.perf_counter()
            spying = threading.Thread(target=py_spy, args=(*spy, sampler.cpu), daemon=True) if spy else None
            if spying:
                spying.start()
            with cf.ThreadPoolExecutor(32) as pool:
                list(
                    pool.map(
                        lambda p: requests.post(
                            f"{base}/video-inference", json={"filename": p.name, "postback_url": rx.url, **body}
                        ),
                        files,
                    )
                )
            posts = rx.wait_for(len(files), timeout=1200)
            dt = time.perf_counter() - t
            if spying:
                spying.join()
    n = sum(p["json"].get("frames_processed", 0) for p in posts)
    video_s = sum(p["json"].get("duration_s", 0.0) for p in posts)
    failed = [p["json"].get("error") for p in posts if p["json"]["status"] != "succeeded"]
    serve.delete("bench")
    processes = sampler.cpu.summary()
    print(f"ingress replicas {ingress}: {n} frames in {dt:.2f} s; processes: {processes}", flush=True)
    note = f"{len(failed)} failed: {failed[:2]}" if failed else "all succeeded"
    note += f"; MPS server {'running' if mps_serving else 'not running'} after the warm-up"
    return n, dt, f"{note}; processes (psutil): {processes}", sampler.summary(), video_s


def py_spy(seconds: float, folder: Path, cpu: ProcessCpu, delay_s: float = 15.0) -> None:
    """Sample two detector replicas with py-spy (a wheel on the GPU machine) for ``seconds``: one every thread that
    is not idle, the other only the thread holding the GIL. Raw (collapsed) stacks, one file each, for
    ``bench/spy_report.py``."""
    import subprocess

    time.sleep(delay_s)
    pids = [pid for pid, (role, _) in cpu.procs.items() if role == "Detector"][:2]
    runs = []
    for pid, extra, name in zip(pids, ([], ["--gil"]), ("replica-threads.txt", "replica-gil.txt"), strict=False):
        cmd = [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{seconds:g}",
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(folder / name),
            *extra,
        ]
        runs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for r in runs:
        _, err = r.communicate()
        if r.returncode:
            print(f"py-spy failed ({r.returncode}): {err.decode()[-500:]}", flush=True)


def warm_clip(src: Path, media: Path, seconds: float = 10.0) -> Path:
    """The first seconds of ``src`` as a file of its own in ``media``, packets copied (the GPU machine cannot
    encode)."""
    import av

    dst = media / f"warm-{src.stem}.mp4"
    if dst.exists():
        return dst
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for pkt in inp.demux(stream):
            if pkt.dts is None:
                continue
            if pkt.is_keyframe and pkt.pts is not None and pkt.pts * stream.time_base >= seconds:
                break
            pkt.stream = copy
            out.mux(pkt)
    return dst


@functools.cache
def _info(path: Path):
    """The file's probe, once per path."""
    from clockwork.video.decode import probe

    return probe(path)


def _reader(path: Path, stream: bool = DETECT.nvdec_stream):
    """Frames of a bench file on the GPU, through the one frame path."""
    from clockwork.video.frames import FrameReader

    return FrameReader(path, device="cuda", info=_info(path), batch_size=32, nvdec_stream=stream)


def _stride(path: Path) -> int:
    """The view stride of every-frame mode on this file at the default multiscale rate (what the API does)."""
    from clockwork.video.views import view_stride

    return view_stride(_info(path).fps, None)


def direct(files: list[Path], sessions: int, cap: int = 0) -> tuple[int, float]:
    """The core GPU pipeline without Serve: NVDEC sessions in threads, one shared fp16 model; each session stops
    after ``cap`` frames (0: the whole file). Tells the cost of the pipeline itself from the cost of Serve around it."""
    det = Detector(device="cuda", half=True)
    lock = threading.Lock()
    stride = _stride(files[0])

    def one(path):
        n = 0
        with _reader(path) as reader:
            for batch in reader:
                prepared = det.prepare(batch, DETECT.views, stride)
                with lock:
                    raw = det.infer(det.model_input(prepared))
                det.postprocess(raw, prepared, labels=["clock"])
                n += len(batch)
                if cap and n >= cap:
                    break
        return n

    work = [files[i % len(files)] for i in range(sessions)] if cap else list(files)
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(sessions) as pool:
        n = sum(pool.map(one, work))
    torch.cuda.synchronize()
    return n, time.perf_counter() - t


def breakdown(path: Path) -> dict[str, float]:
    """Milliseconds per frame of each stage of the core GPU pipeline, one session, synchronised after each."""
    det = Detector(device="cuda", half=True)
    acc = {"decode": 0.0, "letterbox": 0.0, "infer": 0.0, "postprocess": 0.0}
    n, stride = 0, _stride(path)
    for rep in range(2):  # the first pass warms up cuDNN; the second is measured
        with _reader(path) as reader:
            it = iter(reader)
            while True:
                t = time.perf_counter()
                batch = next(it, None)
                torch.cuda.synchronize()
                if batch is None:
                    break
                t1 = time.perf_counter()
                prepared = det.prepare(batch, DETECT.views, stride)
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                raw = det.infer(det.model_input(prepared))
                torch.cuda.synchronize()
                t3 = time.perf_counter()
                det.postprocess(raw, prepared, labels=["clock"])
                t4 = time.perf_counter()
                if rep:
                    for k, dt in zip(acc, (t1 - t, t2 - t1, t3 - t2, t4 - t3), strict=True):
                        acc[k] += dt
                    n += len(batch)
    return {k: v * 1000 / n for k, v in acc.items()}


def churn(path: Path, chunks: int, reuse: bool) -> str:
    """Open, read one batch of and close ``chunks`` chunks of ``path`` one after another (60 s apart, wrapping), while a
    Python thread ticks every millisecond: its longest and summed stalls past 5 ms are time another thread held the
    GIL."""
    from clockwork.video import nvdec
    from clockwork.video.frames import FrameReader

    info = _info(path)
    stalls, stop = [], threading.Event()

    def tick():
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            if now - last > 0.005:
                stalls.append(now - last)
            last = now

    nvdec.POOL.clear()
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    opens, closes = [], []
    t0 = time.perf_counter()
    for i in range(chunks):
        start = (i * 60.0) % max(60.0, info.duration_s - 10)
        t = time.perf_counter()
        reader = FrameReader(path, device="cuda", start_s=start, end_s=start + 60, info=info, nvdec_reuse=reuse)
        batch = next(iter(reader))
        opens.append(time.perf_counter() - t)
        assert batch.indexes[0] == round(start * info.fps), (batch.indexes[0], start)
        t = time.perf_counter()
        reader.close()
        closes.append(time.perf_counter() - t)
    dt = time.perf_counter() - t0
    stop.set()
    ticker.join()
    nvdec.POOL.clear()
    ms = lambda xs: f"median {1000 * statistics.median(xs):.1f} ms, max {1000 * max(xs):.1f} ms"  # noqa: E731
    return (
        f"- decoder churn, {chunks} chunks of {path.name} one after another, decoders "
        f"{'reused' if reuse else 'ended'}: "
        f"{dt:.2f} s; open + first batch {ms(opens)}; close {ms(closes)}; GIL held elsewhere (stalls > 5 ms of a "
        f"ticking thread): {len(stalls)} stalls, {1000 * sum(stalls):.0f} ms in all, longest "
        f"{1000 * max(stalls, default=0):.0f} ms"
    )


def _model_loop(stop, ready, batch: int) -> None:
    """In a child process: the detector's model on one random batch, again and again, as replicas load the card."""
    det = Detector(device="cuda", half=True)
    x = torch.rand(batch, 3, det.input_size, det.input_size, device=det.device).to(det.dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    det.infer(x)
    torch.cuda.synchronize()
    ready.set()
    while not stop.is_set():
        for _ in range(10):
            det.infer(x)
        torch.cuda.synchronize()


def loaded_ceiling(
    files: list[Path], sessions: int, cap: int, procs: int, batch: int = 64, stream: bool = DETECT.nvdec_stream
) -> tuple[int, float]:
    """The decode ceiling while ``procs`` other processes run the model on the same card (under MPS with --mps): does a
    decoder turn out fewer frames a second when the model shares the card?"""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # CUDA in a child needs a fresh interpreter
    stop, readies = ctx.Event(), [ctx.Event() for _ in range(procs)]
    workers = [ctx.Process(target=_model_loop, args=(stop, r, batch), daemon=True) for r in readies]
    for w in workers:
        w.start()
    try:
        for r in readies:
            if not r.wait(300):
                raise RuntimeError("a model process did not start in 300 s")
        return decode_ceiling(files, sessions, cap, stream)
    finally:
        stop.set()
        for w in workers:
            w.join(30)


def decode_ceiling(
    files: list[Path], sessions: int, cap: int = 0, stream: bool = DETECT.nvdec_stream
) -> tuple[int, float]:
    """NVDEC alone, ``sessions`` at once; each stops after ``cap`` frames (0: the whole file), so that 14
    sessions over 30-minute films take seconds, not minutes."""

    def one(path):
        n = 0
        with _reader(path, stream) as reader:
            for batch in reader:
                n += len(batch)
                if cap and n >= cap:
                    break
        return n

    work = [files[i % len(files)] for i in range(sessions)]
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(sessions) as pool:
        n = sum(pool.map(one, work))
    torch.cuda.synchronize()
    return n, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", required=True)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--replicas", default="4", help="detector replicas per GPU; a comma list runs stage 3 for each")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--ingress", default="1", help="API (ingress) replicas; a comma list runs stage 3 for each")
    ap.add_argument(
        "--multiscale-fps",
        default=f"{DETECT.multiscale_fps or 0:g}",
        help="the request's multiscale_fps in stage 3 (0: every view on every frame); a comma list runs stage 3 for "
        "each",
    )
    ap.add_argument(
        "--chunk-s",
        default="5",
        help="the app's chunk length: smaller spreads one file over more replicas; a comma list runs stage 3 for each",
    )
    ap.add_argument(
        "--reuse",
        default=f"{int(DETECT.nvdec_reuse)}",
        help="1: a finished chunk's NVDEC decoder serves the next "
        "(DETECT.nvdec_reuse); a comma list (0,1) runs stage 3 for each",
    )
    ap.add_argument(
        "--stream",
        default=f"{int(DETECT.nvdec_stream)}",
        help="1: each NVDEC decoder works on a CUDA stream of "
        "its own, 0: on the null stream, the model's (DETECT.nvdec_stream); a comma list (0,1) runs stage 3 and "
        "the ceiling for each",
    )
    ap.add_argument(
        "--loaded",
        type=int,
        default=0,
        metavar="PROCS",
        help="stage 4b: each ceiling run again while this many processes run the model on the card",
    )
    ap.add_argument(
        "--churn",
        type=int,
        default=0,
        metavar="CHUNKS",
        help="stage 7: open, read one batch of and close this many chunks one after another, with and without reuse",
    )
    ap.add_argument("--seed-frames", type=int, default=600)
    ap.add_argument(
        "--ceiling-frames",
        type=int,
        default=0,
        help="frames per decode session in the ceiling and direct stages (0: whole files)",
    )
    ap.add_argument("--out", default=None, help="also write the record here")
    ap.add_argument("--stages", default="seed,raydata,ours,direct,breakdown,ceiling")
    ap.add_argument("--mps", action="store_true", help="run every stage under NVIDIA MPS (started and stopped here)")
    ap.add_argument(
        "--sessions",
        default="16",
        help="decoder sessions per GPU in stage 3, over the replicas; a comma list runs stage 3 for each",
    )
    ap.add_argument(
        "--chunk-cap",
        default="0",
        help="1: the API holds chunks back to its replicas' decoders (max_chunks_total); "
        "a comma list (0,1) runs stage 3 for each",
    )
    ap.add_argument("--ceiling-sessions", default="1,7,14", help="NVDEC sessions of each decode-ceiling run")
    ap.add_argument(
        "--py-spy",
        type=float,
        default=0,
        metavar="SECONDS",
        help="record two detector replicas of the first stage-3 run with py-spy this long (raw stacks next to --out)",
    )
    args = ap.parse_args()
    with Mps(args.mps):
        return run(args)


def _each(text: str, cast=int) -> list:
    """A comma list of the command line (``--replicas 4,8``): one value per run."""
    return [cast(x) for x in text.split(",")]


def _flag(x: str) -> bool:
    return bool(int(x))


def _streams(stream: bool) -> str:
    return "streams of their own" if stream else "the null stream"


def run(args) -> int:
    import ray

    stages = args.stages.split(",")
    streams = _each(args.stream, _flag)
    chunk_lengths = _each(args.chunk_s, float)
    replica_counts = _each(args.replicas)
    pool_size = replica_counts[0] * args.gpus
    src = sorted(Path(args.videos).glob("*.mp4"))
    media = Path(tempfile.mkdtemp(prefix="bench-media-", dir=Path(args.videos).resolve().parent))  # same filesystem
    files = []
    for c in range(args.copies):
        for p in src:
            dst = media / f"{p.stem}-{c}.mp4"
            os.link(p.resolve(), dst)  # a hard link: a symlink out of the media root is (rightly) refused
            files.append(dst)
    ray.init(num_gpus=args.gpus, log_to_driver=False, include_dashboard=False)
    res, util = {}, {}
    if "seed" in stages:
        with Sampler(args.gpus) as s:
            res["1. seed-style loop (cv2, fp32, batch 1)"] = seed_style(src[0], args.seed_frames)
        util["1. seed-style loop (cv2, fp32, batch 1)"] = s.summary()
    if "raydata" in stages:
        with Sampler(args.gpus) as s:
            res["2. Ray Data (CPU decode tasks -> GPU actor pool)"] = ray_data(files, pool_size)
        util["2. Ray Data (CPU decode tasks -> GPU actor pool)"] = s.summary()
    note = ""
    if "ours" in stages:
        from ray import serve

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})  # one proxy for every replica count
        notes = []
        spy = (args.py_spy, Path(args.out or ".").resolve().parent) if args.py_spy else None
        for stream, r, ing, m, k, cap, chunk_s, reuse in itertools.product(
            streams,
            replica_counts,
            _each(args.ingress),
            _each(args.multiscale_fps, float),
            _each(args.sessions),
            _each(args.chunk_cap, _flag),
            chunk_lengths,
            _each(args.reuse, _flag),
        ):
            n, dt, note, summary, _ = ours(
                files,
                media,
                r,
                args.gpus,
                port,
                chunk_s,
                ingress=ing,
                sessions=k,
                capped=cap,
                body={"sample_fps": 0, "multiscale_fps": m},
                spy=spy,
                reuse=reuse,
                stream=stream,
            )
            spy = None  # the first run only
            views = f"other views {m:g}/s" if m else "every view every frame"
            setting = (
                f"{r} replicas/GPU x {-(-k // r)} decoders{', chunks held in the API' if cap else ''}, chunks of "
                f"{chunk_s:g} s, "
                f"decoders {'reused' if reuse else 'ended'} after a chunk, {ing} ingress, "
                f"decoders on {_streams(stream)}"
            )
            stage = f"3. ours (Serve API, NVDEC, fp16, every frame, {views}), {setting}"
            res[stage], util[stage] = (n, dt), summary
            notes.append(f"{setting}, {views}: {note}")
        note = "\n  - ".join([""] + notes)
    if "scan" in stages:  # the API's default: coarse-to-fine; what counts is video covered per second
        from ray import serve

        if "ours" not in stages:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
        r = replica_counts[0]
        n, dt, note_scan, summary, video_s = ours(files, media, r, args.gpus, port, chunk_lengths[0], body={})
        stage = f"6. ours, scan mode (the default), {r} replicas/GPU"
        res[stage], util[stage] = (n, dt), summary
        extra_scan = (
            f"- scan mode through the API: {video_s:.0f} s of video in {dt:.1f} s = {video_s / dt:.1f} video s per s "
            f"({video_s / dt:.0f} video hours per GPU-hour on {args.gpus} GPU(s)); {n} frames examined; {note_scan}"
        )
    extra_lines = [extra_scan] if "scan" in stages else []
    if args.churn:
        for reuse in (False, True):
            extra_lines.append(churn(src[0], args.churn, reuse))
    if "breakdown" in stages:
        bd = breakdown(src[0])
        extra_lines.append(
            "- one session, ms per frame (batch 32, synchronised): " + ", ".join(f"{k} {v:.2f}" for k, v in bd.items())
        )
    if "direct" in stages:
        from clockwork.video import nvdec

        for k in (7, 14):
            for shared in (False, True):
                nvdec.SHARE_CONTEXT = shared
                where = "the primary" if shared else "their own"
                stage = f"5. core pipeline without Serve, {k} sessions, decoders in {where} context"
                with Sampler(args.gpus) as s:
                    res[stage] = direct(files, k, args.ceiling_frames)
                util[stage] = s.summary()
        nvdec.SHARE_CONTEXT = True
    if "ceiling" in stages:
        for stream, k in itertools.product(streams, _each(args.ceiling_sessions)):
            on = _streams(stream)
            stage = f"4. NVDEC decode only, {k} sessions, on {on}"
            with Sampler(args.gpus) as s:
                res[stage] = decode_ceiling(files, k, args.ceiling_frames, stream)
            util[stage] = s.summary()
            if args.loaded:
                stage = (
                    f"4b. NVDEC decode only, {k} sessions, on {on}, the model looping in {args.loaded} other processes"
                )
                with Sampler(args.gpus) as s:
                    res[stage] = loaded_ceiling(files, k, args.ceiling_frames, args.loaded, stream=stream)
                util[stage] = s.summary()
    fps = {k: n / dt for k, (n, dt) in res.items()}
    lines = [
        f"{len(src)} file(s) x {args.copies} copies ({', '.join(p.name for p in src)}); views {','.join(DETECT.views)} "
        f"(in every-frame mode the views after full on --multiscale-fps {args.multiscale_fps} frames a second); "
        f"detector replicas per GPU {args.replicas} (each decoding {args.sessions}/N chunks at once) "
        f"(each 1/N of a GPU; Ray Data pool {pool_size} actors); chunk_s {args.chunk_s}; {args.gpus} GPU(s); "
        f"{'under MPS' if args.mps else 'no MPS (processes time-slice the GPU)'}; torch {torch.__version__}.",
        "",
        "| stage | frames | seconds | frames/s | utilisation (NVML mean) |",
        "|---|---|---|---|---|",
    ]
    for k, (n, dt) in res.items():
        lines.append(f"| {k} | {n} | {dt:.2f} | {fps[k]:.1f} | {util.get(k, '')} |")
    o = max((v for k, v in fps.items() if k.startswith("3.")), default=None)
    ceiling = max((v for k, v in fps.items() if k.startswith("4.")), default=None)
    lines.append("")
    if o and "1. seed-style loop (cv2, fp32, batch 1)" in fps:
        lines.append(f"- ours / seed-style: {o / fps['1. seed-style loop (cv2, fp32, batch 1)']:.1f}x")
    if o and "2. Ray Data (CPU decode tasks -> GPU actor pool)" in fps:
        lines.append(f"- ours / Ray Data: {o / fps['2. Ray Data (CPU decode tasks -> GPU actor pool)']:.2f}x")
    if o and ceiling:
        for k, v in fps.items():
            if k.startswith("3."):
                lines.append(f"- {k} / best decode ceiling: {v / ceiling:.2f}")
    for k, v in fps.items():
        if k.startswith("4b.") and ceiling:
            lines.append(f"- {k} / best decode ceiling (the card idle but for decoding): {v / ceiling:.2f}")
    if note:
        lines.append(f"- API jobs: {note}")
    lines += extra_lines
    text = record("GPU: four-way benchmark (bench/gpu.py)", lines)
    if args.out:
        Path(args.out).write_text(text)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
