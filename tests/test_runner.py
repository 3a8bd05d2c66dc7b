"""The job runner (serve_app/runner.py): chunks fanned out over the detector (a failed chunk cancels its siblings, a
cap on chunks across jobs), the video checked once and in turn, a resumed job checked anew, and the chunk plan
(the packet index built once, frames far apart, a header that claims more than the packets hold)."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from clockwork.errors import CorruptVideoError
from serve_app.client import LocalDetectorClient
from tests.conftest import ffmpeg
from tests.test_hardening import tiny, wait


def test_chunk_index_is_built_once_per_file(tmp_path):
    from clockwork.video import decode

    path = tiny(tmp_path, "idx.mp4", 4)
    calls = []
    real_open = decode.av.open

    def counting_open(*args, **kwargs):
        calls.append(args[0])
        return real_open(*args, **kwargs)

    decode.av.open = counting_open
    try:
        for start in (1.0, 2.0, 3.0):
            with decode.VideoDecoder(path, start_s=start, end_s=start + 1) as dec:
                assert sum(1 for _ in dec) == 10
    finally:
        decode.av.open = real_open
    assert len(calls) == 3 + 1  # one open per decoder, and one demux of the whole file for the index


def test_a_truncated_long_video_fails_in_chunks_too(make_client, tmp_path):
    path = tiny(tmp_path / "media", "long.mp4", 6, "160x120", "-movflags", "+faststart")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    client = make_client(chunk_s=1.0)
    job_id = client.post("/video-inference", json={"filename": "long.mp4", "views": ["full"]}).json()["job_id"]
    status = wait(client, job_id, lambda s: s["status"] in ("succeeded", "failed"), timeout=60)
    assert status["status"] == "failed" and "truncated" in status["error"], status
    assert "long.mp4" in status["error"] and str(tmp_path) not in status["error"]


class OneBadChunk(LocalDetectorClient):
    """The real detector, except that the chunk from 1 s on finds the file corrupt at once; the others are
    slowed so they are still running when it fails. Records which chunks were closed before their end."""

    def __init__(self, detector):
        super().__init__(detector)
        self.closed_early: list[float] = []

    async def detect_chunk(self, path, start_s, end_s, **kwargs):

        if start_s == 1.0:
            raise CorruptVideoError(path, "decoding failed (test: chunk 1)")
        finished = False
        try:
            async for item in super().detect_chunk(path, start_s, end_s, **kwargs):
                await asyncio.sleep(0.5)
                yield item
            finished = True
        finally:
            if not finished:
                self.closed_early.append(start_s)


def test_a_failed_chunk_cancels_its_siblings_and_fails_the_job_once(make_client, tmp_path, detector, caplog):
    tiny(tmp_path / "media", "four.mp4", 4, "160x120")
    bad = OneBadChunk(detector)
    client = make_client(detector_client=bad, chunk_s=1.0, chunk_retries=0)
    t = time.monotonic()
    job_id = client.post("/video-inference", json={"filename": "four.mp4", "views": ["full"], "sample_fps": 0}).json()[
        "job_id"
    ]
    status = wait(client, job_id, lambda s: s["status"] in ("succeeded", "failed"), timeout=60)
    assert (
        status["status"] == "failed"
        and status["error"] == "corrupt or truncated video: four.mp4: decoding failed (test: chunk 1)"
    )
    assert time.monotonic() - t < 8
    assert bad.closed_early, "the sibling chunks were not cancelled"
    assert "Task exception was never retrieved" not in caplog.text


class CountingChunks(LocalDetectorClient):
    """The real detector; records the most chunks that were running at once, across every job."""

    def __init__(self, detector):
        super().__init__(detector)
        self.running = self.most = 0

    async def detect_chunk(self, path, start_s, end_s, **kwargs):

        self.running += 1
        self.most = max(self.most, self.running)
        running = True
        try:
            async for item in super().detect_chunk(path, start_s, end_s, **kwargs):
                await asyncio.sleep(0.05)  # long enough for the other job's chunks to start beside this one
                if item.get("done"):  # the caller stops reading here (the stream is closed later)
                    self.running, running = self.running - 1, False
                yield item
        finally:
            if running:
                self.running -= 1


@pytest.mark.parametrize("total,most", [(None, 4), (2, 2)])
@pytest.mark.slow  # waits on real timers and several jobs: the slow tier
def test_max_chunks_total_caps_chunks_across_jobs(make_client, tmp_path, detector, total, most):
    """Two jobs of three chunks each, two chunks a job at once: four run together; with ``max_chunks_total`` 2 never
    more than two across both jobs, and both jobs still finish with every frame."""
    tiny(tmp_path / "media", "a.mp4", 3, "160x120")
    tiny(tmp_path / "media", "b.mp4", 3, "160x120")
    counting = CountingChunks(detector)
    client = make_client(detector_client=counting, chunk_s=1.0, max_chunks_in_flight=2, max_chunks_total=total)
    jobs = [
        client.post("/video-inference", json={"filename": f"{n}.mp4", "views": ["full"], "sample_fps": 0}).json()[
            "job_id"
        ]
        for n in "ab"
    ]
    for job_id in jobs:
        status = wait(client, job_id, lambda s: s["status"] in ("succeeded", "failed"), timeout=60)
        assert status["status"] == "succeeded", status
        assert client.get(f"/jobs/{job_id}/result").json()["frames_processed"] == 30
    assert counting.most == most


def test_frames_far_apart_in_a_variable_rate_file_are_all_examined(make_client, tmp_path):
    """Frames at 0, 50,000 and 100,000 s: the chunks between them hold nothing, and none of them ends the video."""
    media = tmp_path / "media"
    media.mkdir(parents=True, exist_ok=True)
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=1:duration=3",
        "-vf",
        "setpts=N*50000/TB",
        "-fps_mode",
        "passthrough",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        str(media / "sparse.mkv"),
    )
    client = make_client()
    job = client.post(
        "/video-inference", json={"filename": "sparse.mkv", "sample_fps": 0, "views": ["full"], "read_time": False}
    )
    assert job.status_code == 202, job.text
    status = wait(client, job.json()["job_id"], lambda s: s["status"] in ("succeeded", "failed"), timeout=300)
    assert status["status"] == "succeeded", status
    doc = client.get(f"/jobs/{job.json()['job_id']}/result").json()
    assert doc["frames_processed"] == 3 and doc["duration_s"] >= 100_000, {
        k: doc[k] for k in ("frames_processed", "duration_s")
    }


def test_a_header_that_claims_days_is_planned_from_its_packets(make_client, tmp_path):
    """A 2 s MKV whose Segment Duration says 139 days: planned from where its packets end, it succeeds
    in seconds with its true length (before: 100,000 chunks and a 12,000,000 s result)."""
    path = tiny(tmp_path / "media", "bomb.mkv", 2)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # EBML Duration, an 8-byte float of milliseconds
    assert at > 0 and struct.unpack(">d", data[at + 3 : at + 11])[0] == 2000.0
    data[at + 3 : at + 11] = struct.pack(">d", 139 * 86400 * 1000.0)
    path.write_bytes(bytes(data))
    client = make_client(chunk_s=0.5)
    job_id = client.post("/video-inference", json={"filename": "bomb.mkv", "views": ["full"]}).json()["job_id"]
    status = wait(client, job_id, lambda s: s["status"] in ("succeeded", "failed"), timeout=60)
    assert status["status"] == "succeeded", status
    assert status["timings"]["chunks"] <= 4
    assert client.get(f"/jobs/{job_id}/result").json()["duration_s"] < 3


@pytest.mark.slow  # waits on real timers and several jobs: the slow tier
def test_a_posted_video_is_checked_once_and_a_resumed_job_again(make_client, monkeypatch, tmp_path, samples_dir):
    """POST checks the video (header, first frame, tail) and the job's run starts from that check instead of making
    it again; a job the reaper resumes (here: one admitted by an API replica that died before running it) has no
    such check and makes its own."""
    import serve_app.runner as runner
    from clockwork.store.catalog import Catalog, Job

    calls = []
    probe = runner.probe
    monkeypatch.setattr(runner, "probe", lambda path, **kw: calls.append(path) or probe(path, **kw))
    client = make_client()
    resp = client.post("/video-inference", json={"filename": "clock_moving_360p25.mp4", "sample_fps": 2})
    assert resp.status_code == 202, resp.text
    wait(client, resp.json()["job_id"], lambda s: s["status"] == "succeeded")
    assert len(calls) == 1
    path = str(samples_dir / "clock_moving_360p25.mp4")
    with Catalog(f"sqlite:///{tmp_path}/catalog.sqlite").session() as s:  # the app's catalog (make_client)
        orphan = Job(
            video_path=path,
            filename="clock_moving_360p25.mp4",
            body_hash="orphan",
            dedupe_key="body:orphan",
            params={"labels": ["clock"], "min_score": 0.5, "sample_fps": 2.0, "views": ["full"]},
        )
        s.add(orphan)
        s.flush()
        orphan_id = orphan.id
    wait(client, orphan_id, lambda s: s["status"] == "succeeded")
    assert len(calls) == 2


def test_video_checks_run_a_few_at_a_time_in_the_order_posted():
    """AppArgs.video_checks_in_flight: checks past the limit wait, and the earliest posted is checked first (a crowd of
    posts must not make every job wait for every check)."""
    import threading
    import time

    from serve_app.config import AppArgs
    from serve_app.runner import JobRunner

    runner = JobRunner(AppArgs(video_checks_in_flight=2), catalog=None, detector=None, metrics=None)
    lock, running, most, finished = threading.Lock(), [0], [0], []

    def slow_check(path):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
            finished.append(path)
        return path

    runner.checked_info = slow_check

    async def post_all():
        return await asyncio.gather(*(runner.check(f"v{i}") for i in range(8)))

    assert asyncio.run(post_all()) == [f"v{i}" for i in range(8)]
    assert most[0] == 2
    assert finished[:2] in (["v0", "v1"], ["v1", "v0"]) and set(finished[-2:]) == {"v6", "v7"}
