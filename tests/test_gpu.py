"""The GPU path: NVDEC decoding + fp16 detector agree with the CPU path; fallback; fractional replicas.

Marked ``needs_cuda``: skipped on CPU-only CI, and failing instead of skipping on the GPU machine
when CLOCKWORK_FAIL_WITHOUT_CUDA=1.
"""

from __future__ import annotations

import time

import pytest

from clockwork.decode import VideoDecoder, VideoInfo, probe
from clockwork.pipeline import ResultBuilder

pytestmark = pytest.mark.needs_cuda

AGREE = ["clock_static_720p30.mp4", "clock_moving_360p25.mp4", "clock_60fps_480p.mp4", "distractor_fractal_30.mp4"]


def run_cpu(path, detector):
    info = probe(path)
    b = ResultBuilder(info, model={}, labels=["clock"], min_score=0.5, sample_fps=None)
    with VideoDecoder(path) as dec:
        for frames in dec.batches(16):
            b.add(frames, detector.detect([f.image for f in frames], labels=["clock"]))
    return b.build(dec.frames_in_chunk)


def run_gpu(path, detector):
    from clockwork.nvdec import GpuVideoDecoder, gpu_decode_problem

    info = probe(path)
    assert gpu_decode_problem(info, detector.device) is None
    b = ResultBuilder(info, model={}, labels=["clock"], min_score=0.5, sample_fps=None)
    with GpuVideoDecoder(path, info, batch=32) as dec:
        for batch in dec.batches():
            x, metas = detector.letterbox_gpu(batch.frames)
            dets = detector.postprocess(detector.infer(x), metas, labels=["clock"])
            for i, t, d in zip(batch.indexes, batch.timestamps, dets):
                b.add_frame(i, t, d)
    return b.build(dec.frames_in_chunk)


@pytest.fixture(scope="module")
def gpu_detector():
    from clockwork.detector import Detector

    return Detector(device="cuda", half=True)


@pytest.mark.parametrize("name", AGREE)
def test_gpu_path_agrees_with_cpu_path(name, samples_dir, detector, gpu_detector):
    cpu = run_cpu(samples_dir / name, detector)
    gpu = run_gpu(samples_dir / name, gpu_detector)
    assert gpu.frames_total == cpu.frames_total
    assert len(gpu.segments) == len(cpu.segments)
    for a, b in zip(cpu.segments, gpu.segments):
        assert abs(a.start_s - b.start_s) <= 2 / cpu.fps and abs(a.end_s - b.end_s) <= 2 / cpu.fps
    gpu_frames = {f.frame_no: f for f in gpu.frame_data}
    compared = 0
    for f in cpu.frame_data:
        g = gpu_frames.get(f.frame_no)
        if g is None or not f.detections or not g.detections:
            continue
        a, b = f.detections[0], g.detections[0]
        assert abs(f.timestamp_s - g.timestamp_s) < 1e-3
        for u, v in ((a.x, b.x), (a.y, b.y), (a.w, b.w), (a.h, b.h)):
            assert abs(u - v) <= max(4.0, 0.03 * max(cpu.width, cpu.height)), (name, f.frame_no, a, b)
        assert abs(a.score - b.score) < 0.05
        compared += 1
    if cpu.frame_data:
        assert compared >= 0.9 * len(cpu.frame_data)


def test_fallback_reasons(samples_dir, gpu_detector):
    import torch

    from clockwork.nvdec import gpu_decode_problem

    assert gpu_decode_problem(probe(samples_dir / "clock_portrait_2997.mp4"), gpu_detector.device) == "rotation"
    av1 = VideoInfo("x.mkv", 1920, 1080, 30.0, 300, 10.0, "av1", 0, False)
    assert gpu_decode_problem(av1, gpu_detector.device) == "codec_av1"
    assert gpu_decode_problem(probe(samples_dir / "clock_static_720p30.mp4"), torch.device("cpu")) == "no_cuda"


def test_fractional_replicas_share_one_card_and_fall_back(samples_dir, tmp_path):
    import ray
    import requests
    from ray import serve

    from serve_app.app import app_builder
    from tests.receiver import Receiver, free_port

    ray.init(num_gpus=1, log_to_driver=False, include_dashboard=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app_builder({"media_roots": [str(samples_dir)], "database_url": f"sqlite:///{tmp_path}/c.sqlite",
                               "postback_allow": ["127.0.0.0/8"], "detector_num_gpus": 0.25, "detector_replicas": 4}),
                  name="gpu", route_prefix="/")
        status = serve.status().applications["gpu"].deployments["Detector"]
        assert status.replica_states.get("RUNNING") == 4
        assert ray.available_resources().get("GPU", 0) == 0  # four quarters fill the one card
        handle = serve.get_deployment_handle("Detector", app_name="gpu")
        devices = {handle.info.remote().result()["device"] for _ in range(12)}
        assert len(devices) == 1 and next(iter(devices)).startswith("cuda")
        snap = handle.gpu_snapshot.remote().result()
        assert snap["mem_total"] > 0 and 0 <= snap["dec_util"] <= 100
        with Receiver() as rx:
            names = ["clock_static_720p30.mp4", "clock_portrait_2997.mp4"]  # NVDEC, then the CPU fallback (rotation)
            for n in names:
                assert requests.post(f"http://127.0.0.1:{port}/video-inference",
                                     json={"filename": n, "postback_url": rx.url}).status_code == 202
            posts = rx.wait_for(2, timeout=300)
        docs = {p["json"]["video_file"]: p["json"] for p in posts}
        assert all(d["status"] == "succeeded" for d in docs.values()), docs
        assert len(docs["clock_portrait_2997.mp4"]["segments"]) == 1 and (docs["clock_portrait_2997.mp4"]["width"], docs["clock_portrait_2997.mp4"]["height"]) == (360, 640)
        assert len(docs["clock_static_720p30.mp4"]["segments"]) == 1
    finally:
        serve.shutdown()
        ray.shutdown()
        time.sleep(1)
