"""Runs jobs for the ingress: detection over detector handles, then the postback, with leases.

Every job lives in the catalog. A runner claims a job with a lease it renews while working; a job
whose runner died (replica killed, app restarted) is found by the reaper once its lease expires and
is resumed: detection runs again, or only the postback is retried. Nothing is silently lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from sqlalchemy import select

from clockwork.catalog import Catalog, Job, utcnow
from clockwork.decode import VideoInfo, probe
from clockwork.detector import Detection
from clockwork.errors import VideoError
from clockwork.pipeline import ResultBuilder
from clockwork.postback import HostPolicy, PostbackURLError, RetryPolicy, post_once
from serve_app.config import AppArgs
from serve_app.metrics import IngressMetrics

logger = logging.getLogger("clockwork.serve")


def plan_chunks(duration_s: float, chunk_s: float) -> list[tuple[float, float | None]]:
    """Time ranges covering the video; the last is open-ended so no trailing frame is lost."""
    if duration_s <= chunk_s * 1.5:
        return [(0.0, None)]
    n = int(duration_s // chunk_s)
    return [(i * chunk_s, (i + 1) * chunk_s if i < n - 1 else None) for i in range(n)]


def failure_document(job: Job, error: str) -> dict:
    return {"job_id": job.id, "status": "failed", "error": error, "video_file": job.video_path.rsplit("/", 1)[-1]}


class JobRunner:
    def __init__(self, args: AppArgs, catalog: Catalog, detector_handle, metrics: IngressMetrics):
        self.args = args
        self.catalog = catalog
        self.detector = detector_handle.options(stream=True)
        self.metrics = metrics
        self.owner = uuid.uuid4().hex
        self.policy = HostPolicy(tuple(args.postback_allow), tuple(args.postback_deny))
        self.retry = RetryPolicy(args.postback_max_attempts, args.postback_base_delay_s, args.postback_max_delay_s,
                                 args.postback_timeout_s)
        self.tasks: dict[str, asyncio.Task] = {}
        self._model: dict | None = None

    # -- scheduling ------------------------------------------------------------------------------

    def start(self, job_id: str) -> None:
        if job_id not in self.tasks:
            task = asyncio.get_running_loop().create_task(self._run(job_id))
            self.tasks[job_id] = task
            task.add_done_callback(lambda _t, j=job_id: self.tasks.pop(j, None))

    async def reap_forever(self) -> None:
        """Resume jobs whose lease expired (their runner died) and refresh the job gauges."""
        while True:
            try:
                for job_id in await asyncio.to_thread(self.catalog.orphaned_jobs):
                    self.start(job_id)
                counts = await asyncio.to_thread(self.catalog.counts_by_status)
                for status, n in counts.items():
                    self.metrics.jobs.set(n, tags={"status": status})
                self.metrics.queue_depth.set(counts["queued"] + counts["running"])
            except Exception:
                logger.exception("reaper pass failed")
            await asyncio.sleep(self.args.reaper_interval_s)

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.args.lease_s / 3)
            await asyncio.to_thread(self.catalog.renew, job_id, self.owner, self.args.lease_s)

    async def _run(self, job_id: str) -> None:
        if not await asyncio.to_thread(self.catalog.claim, job_id, self.owner, self.args.lease_s):
            return
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job_id))
        try:
            job = await asyncio.to_thread(self._load, job_id)
            if job.status in ("queued", "running"):
                await self._detect_job(job)
                job = await asyncio.to_thread(self._load, job_id)
            if not job.postback_delivered and not job.postback_gave_up:
                await self._postback(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s: runner failed; the reaper will resume it", job_id)
            return  # keep the lease until it expires, then another pass resumes it
        finally:
            beat.cancel()
        await asyncio.to_thread(self.catalog.release, job_id, self.owner)

    def _load(self, job_id: str) -> Job:
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            s.expunge(job)
            return job

    def _update(self, job_id: str, **values) -> None:
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            for k, v in values.items():
                setattr(job, k, v)

    # -- detection -------------------------------------------------------------------------------

    async def _detect_job(self, job: Job) -> None:
        if job.attempts >= self.args.max_job_attempts:
            await asyncio.to_thread(self._finish, job, None, (
                f"gave up after {job.attempts} attempts: the app or its detector stopped during each run"))
            return
        await asyncio.to_thread(self._update, job.id, status="running", started_at=utcnow(), attempts=job.attempts + 1,
                                frames_done=0, error=None)
        t0 = time.perf_counter()
        try:
            document, timings = await self._detect(job)
        except VideoError as exc:
            await asyncio.to_thread(self._finish, job, None, str(exc))
            return
        except Exception as exc:  # a chunk kept failing after its retries
            await asyncio.to_thread(self._finish, job, None, f"detection failed: {type(exc).__name__}: {exc}"[:2000])
            return
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        self.metrics.job_seconds.observe(timings["total_s"])
        await asyncio.to_thread(self._finish, job, document, None, timings)

    async def _detect(self, job: Job) -> tuple[dict, dict]:
        params = job.params
        info: VideoInfo = await asyncio.to_thread(probe, job.video_path)
        builder = ResultBuilder(info, model=await self._model_info(), labels=params["labels"],
                                min_score=params["min_score"], sample_fps=params["sample_fps"])
        chunks = plan_chunks(info.duration_s, self.args.chunk_s)
        await asyncio.to_thread(self._update, job.id, frames_total=info.frames_total)
        progress = {"done": 0, "decoded": 0, "last_write": 0.0}
        sem = asyncio.Semaphore(self.args.max_chunks_in_flight)

        async def run_chunk(start: float, end: float | None) -> None:
            async with sem:
                for attempt in range(self.args.chunk_retries + 1):
                    frames: list = []
                    processed = 0
                    try:
                        gen = self.detector.detect_chunk.remote(job.video_path, start, end, labels=params["labels"],
                                                               min_score=params["min_score"], sample_fps=params["sample_fps"])
                        async for item in gen:
                            if item.get("done"):
                                progress["decoded"] += item["frames_decoded"]
                                break
                            frames.extend(item["frames"])
                            processed += item["processed"]
                            progress["done"] += item["processed"]
                            await self._progress(job.id, progress)
                        for frame_no, ts, dets in frames:
                            builder.add_frame(frame_no, ts, [Detection(*d) for d in dets])
                        builder.processed += processed - len(frames)
                        return
                    except VideoError:
                        raise
                    except Exception as exc:
                        if _is_video_error(exc):
                            raise
                        progress["done"] -= processed
                        if attempt == self.args.chunk_retries:
                            raise
                        logger.warning("job %s chunk %s-%s failed (%s); retrying", job.id, start, end, exc)
                        await asyncio.sleep(min(1.0 * 2 ** attempt, 10.0))

        t = time.perf_counter()
        await asyncio.gather(*(run_chunk(a, b) for a, b in chunks))
        result = builder.build(progress["decoded"])
        return result.to_json(), {"detect_s": round(time.perf_counter() - t, 3), "chunks": len(chunks)}

    async def _model_info(self) -> dict:
        if self._model is None:
            self._model = (await self.detector.options(stream=False).info.remote())["model"]
        return self._model

    async def _progress(self, job_id: str, progress: dict) -> None:
        now = time.monotonic()
        if now - progress["last_write"] >= 0.5:
            progress["last_write"] = now
            await asyncio.to_thread(self._update, job_id, frames_done=progress["done"])

    def _finish(self, job: Job, document: dict | None, error: str | None, timings: dict | None = None) -> None:
        with self.catalog.session() as s:
            row = s.get(Job, job.id)
            row.finished_at = utcnow()
            row.timings = {**(row.timings or {}), **(timings or {})}
            if document is not None:
                result = self.catalog.save_result(s, job.video_path, document, _result_params(job.params))
                row.result_id = result.id
                row.status = "succeeded"
                row.frames_done = document["frames_processed"]
                row.frames_total = document["frames_total"]
            else:
                row.status = "failed"
                row.error = error
        self.metrics.jobs_finished.inc(tags={"status": "succeeded" if document is not None else "failed"})

    # -- postback --------------------------------------------------------------------------------

    def postback_body(self, job_id: str) -> bytes:
        """The exact bytes posted back; GET /jobs/{id}/result serves the same document."""
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            if job.status == "succeeded":
                doc = {"job_id": job.id, "status": "succeeded", **job.result.document}
            else:
                doc = failure_document(job, job.error or "unknown error")
        return json.dumps(doc, separators=(",", ":")).encode()

    async def _postback(self, job: Job) -> None:
        body = await asyncio.to_thread(self.postback_body, job.id)
        attempts = job.postback_attempts
        while attempts < self.retry.max_attempts:
            try:
                await asyncio.to_thread(self.policy.check, job.postback_url)
            except PostbackURLError as exc:  # checked again at send time: DNS may have changed
                self.metrics.postback_failures.inc()
                await asyncio.to_thread(self._update, job.id, postback_gave_up=True, postback_last_error=str(exc))
                return
            attempt = await asyncio.to_thread(post_once, job.postback_url, body, secret=self.args.postback_secret,
                                              timeout_s=self.retry.timeout_s, job_id=job.id)
            attempts += 1
            self.metrics.stage_seconds.observe(attempt.seconds, tags={"stage": "postback"})
            self.metrics.postback_attempts.inc(tags={"outcome": "delivered" if attempt.ok else "error"})
            if attempt.ok:
                await asyncio.to_thread(self._update, job.id, postback_attempts=attempts, postback_delivered=True,
                                        postback_last_error=None)
                return
            gave_up = attempts >= self.retry.max_attempts
            await asyncio.to_thread(self._update, job.id, postback_attempts=attempts, postback_last_error=attempt.error,
                                    postback_gave_up=gave_up)
            if gave_up:
                self.metrics.postback_failures.inc()
                logger.warning("job %s: postback to %s failed %d times; giving up: %s", job.id, job.postback_url,
                               attempts, attempt.error)
                return
            await asyncio.sleep(self.retry.delay(attempts))


def _result_params(params: dict) -> dict:
    return {k: params[k] for k in ("labels", "min_score", "sample_fps")}


def _is_video_error(exc: BaseException) -> bool:
    """Ray wraps a replica's exception; its cause or class name still tells a bad video from a dead replica."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VideoError):
        return True
    return any(name in type(exc).__name__ for name in ("VideoError", "NotAVideoError", "CorruptVideoError",
                                                        "NoVideoStreamError", "VideoNotFoundError"))


def job_status(job: Job, base_url: str = "") -> dict:
    def iso(t):
        return t.isoformat() + "Z" if t else None

    return {
        "job_id": job.id, "status": job.status, "filename": job.video_path,
        "progress": {"frames_done": job.frames_done, "frames_total": job.frames_total},
        "timings": {"created_at": iso(job.created_at), "started_at": iso(job.started_at),
                    "finished_at": iso(job.finished_at), **(job.timings or {})},
        "error": job.error, "attempts": job.attempts,
        "postback": {"url": job.postback_url, "attempts": job.postback_attempts, "delivered": job.postback_delivered,
                     "gave_up": job.postback_gave_up, "last_error": job.postback_last_error},
        "result_url": f"{base_url}/jobs/{job.id}/result",
    }


def find_job(catalog: Catalog, *, key: str | None, body_hash: str, window_s: float) -> Job | None:
    import datetime as dt

    with catalog.session() as s:
        if key:
            job = s.scalar(select(Job).where(Job.idempotency_key == key))
        else:
            since = utcnow() - dt.timedelta(seconds=window_s)
            job = s.scalar(select(Job).where(Job.body_hash == body_hash, Job.created_at >= since)
                           .order_by(Job.created_at.desc()))
        if job is not None:
            s.expunge(job)
        return job
