"""Runs jobs for the API: detection fanned out over chunks, then the postback, under catalog leases.

Every job lives in the catalog. A runner claims a job with a lease it renews while working; a job
whose runner died (replica killed, app restarted) is found by the reaper once its lease expires and
is resumed: detection runs again, or only the postback is retried. Nothing is silently lost.

Three parts, each small: :class:`ChunkFanout` (one video -> chunks -> detector calls -> a result),
``clockwork.store.postback.deliver_once`` (one attempt; the schedule lives in the catalog) and :class:`JobRunner`
(leases and job states).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

import av
import numpy as np

from clockwork.errors import ClockworkError, CorruptVideoError, VideoError, VideoTooLargeError
from clockwork.store.catalog import Catalog, Job, JobStatus, utcnow
from clockwork.store.postback import HostPolicy, RetryPolicy, deliver_once
from clockwork.timeline.options import DetectOptions
from clockwork.timeline.pipeline import ResultBuilder, first_pass, refine_pass
from clockwork.video.decode import (
    VideoInfo,
    check_complete,
    completeness_claim,
    keyframe_times,
    measured_duration,
    packet_times,
    probe,
)
from clockwork.video.media import PathNotAllowedError, open_confined, relative_name
from serve_app.client import DetectorClient, video_error_of
from serve_app.config import AppArgs
from serve_app.metrics import IngressMetrics

logger = logging.getLogger("clockwork.serve")


def plan_chunks(
    duration_s: float, chunk_s: float, keyframe_before: Callable[[list[float]], list[float | None]] | None = None
) -> list[tuple[float, float | None]]:
    """Time ranges covering the video; the last is open-ended so no trailing frame is lost.

    With ``keyframe_before`` (times -> the keyframe at or before each, or None;
    ``clockwork.video.decode.keyframe_times``)
    each boundary moves back to its keyframe where the chunk before it stays at least half a chunk long: a
    chunk that starts on a keyframe decodes no frame of the chunk before it (a decoder starts at a keyframe)."""
    if duration_s <= chunk_s * 1.5:
        return [(0.0, None)]
    bounds = [i * chunk_s for i in range(1, int(duration_s // chunk_s))]
    if keyframe_before is not None:
        previous = 0.0
        for i, key in enumerate(keyframe_before(bounds)):
            if key is not None and previous + chunk_s / 2 <= key <= bounds[i]:
                bounds[i] = key
            previous = bounds[i]
    edges = [0.0, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def failure_document(job: Job, error: str) -> dict:
    return {
        "job_id": job.id,
        "status": JobStatus.FAILED.value,
        "error": error,
        "video_file": job.video_path.rsplit("/", 1)[-1],
    }


class ChunkFanout:
    """Detect one video as parallel time-range chunks on detector replicas, retrying a chunk whose
    replica died; a bad video (VideoError) is not retried. The chunks run in one task group: the
    first that fails for good cancels its siblings, and its error is the job's."""

    def __init__(
        self,
        detector: DetectorClient,
        *,
        chunk_s: float,
        max_in_flight: int,
        retries: int,
        on_progress: Callable[[int, dict], Awaitable[None]],
        roots: list[str] | None = None,
        slots: asyncio.Semaphore | None = None,
        max_pixels: int | None = None,
    ):
        self.detector = detector
        self.max_pixels = max_pixels  # every decoded frame is held to it, not only the header's size
        self.chunk_s = chunk_s
        self.sem = asyncio.Semaphore(max_in_flight)
        self.slots = slots  # shared by every job of this API replica (AppArgs.max_chunks_total); None: no such cap
        self.retries = retries
        self.on_progress = on_progress
        self.roots = roots
        self.done = 0
        self.decoded = 0
        # the stage in video seconds: its name, its total (fixed when it starts), seconds done, frames a second examined
        self.stage = {"stage": "", "video_s_done": 0.0, "video_s_total": 0.0}
        self.rate = 0.0
        self.empty_from: float | None = None  # the first chunk that decoded nothing: the video ends before it
        self.last_packet_s = -1.0  # the last video packet's time, where the packet index could be read

    async def run(self, path: str, info: VideoInfo, options: DetectOptions, model: dict) -> tuple[dict, dict]:
        """The passes of ``clockwork.timeline.pipeline`` (a scan's coarse pass, then every frame of its windows; or one
        sampled or every-frame pass), each cut into chunks that run in parallel on the detector replicas."""
        builder = ResultBuilder.for_options(info, options, model=model)
        chunks = await asyncio.to_thread(plan_chunks, info.duration_s, self.chunk_s, partial(self._keyframes, path))
        # a variable-rate file may hold long stretches without a frame: skip those chunks, and never read an empty
        # chunk as the end of the video while frames come after it
        times = await asyncio.to_thread(self._packets, path)
        if times is not None and len(times):
            chunks = [(a, b) for a, b in chunks if _holds_packets(times, a, b)]
            self.last_packet_s = float(times[-1])
        t = time.perf_counter()
        first = first_pass(options, info.fps)
        self._begin(first.stage, info.duration_s, first.rate or info.fps)
        await self._fan(path, options, first.rate, builder, [(a, b, True) for a, b in chunks])
        if info.frames_listed and self.decoded < 0.95 * info.frames_listed - 1:
            raise CorruptVideoError(
                path, f"truncated: decoded {self.decoded} of the {info.frames_listed} frames the container lists"
            )
        decoded = self.decoded
        timings = {"chunks": len(chunks)}
        end = min(info.duration_s, self.empty_from) if self.empty_from is not None else info.duration_s
        refine = refine_pass(first, builder, end)
        if refine is not None:
            self._begin(refine.stage, sum((b or end) - a for a, b in refine.ranges), info.fps)
            await self._fan(path, options, refine.rate, builder, [(a, b, False) for a, b in refine.ranges])
            timings["refined"] = len(refine.ranges)
        checked_against, claimed = await asyncio.to_thread(self._claim, path, info)
        result = replace(builder.build(decoded), completeness={"checked_against": checked_against, "claimed": claimed})
        document = result.to_json()
        timings["detect_s"] = round(time.perf_counter() - t, 3)
        if self.empty_from is not None:
            timings["video_ends_before_s"] = self.empty_from
        return document, timings

    def _begin(self, stage: str, total_s: float, rate: float | None) -> None:
        self.stage = {
            "stage": stage,
            "video_s_done": 0.0,
            "video_s_total": round(total_s, 3),
            "stage_started": time.time(),
        }
        self.rate = rate or 30.0

    def _advance(self, processed: int, room_s: float) -> float:
        """Video seconds that ``processed`` frames of a chunk cover, at most what the chunk has left."""
        seconds = min(processed / self.rate, max(room_s, 0.0))
        self.stage["video_s_done"] = round(min(self.stage["video_s_done"] + seconds, self.stage["video_s_total"]), 3)
        return seconds

    def _claim(self, path: str, info: VideoInfo) -> tuple[str, int | None]:
        with open_confined(path, self.roots) as opened:
            return completeness_claim(opened, info)

    def _packets(self, path: str):
        """The video packets' times (demuxed, not decoded; ``decode.packet_times``), or None when unreadable."""
        try:
            with open_confined(path, self.roots) as opened:
                return packet_times(opened)
        except (OSError, ValueError, av.error.FFmpegError):
            return None

    def _keyframes(self, path: str, times: list[float]) -> list[float | None]:
        with open_confined(path, self.roots) as opened:
            return keyframe_times(opened, times)

    async def _fan(
        self,
        path: str,
        options: DetectOptions,
        rate: float | None,
        builder: ResultBuilder,
        chunks: list[tuple[float, float | None, bool]],
    ) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for a, b, counts in chunks:
                    group.create_task(self._chunk(path, options, rate, builder, a, b, counts))
        except BaseExceptionGroup as group_error:
            raise _first_cause(group_error) from None

    async def _chunk(
        self,
        path: str,
        options: DetectOptions,
        rate: float | None,
        builder: ResultBuilder,
        start: float,
        end: float | None,
        counts: bool = True,
    ) -> None:
        """One chunk; ``counts``: its decoded frames count towards the video's (not a scan's refined windows)."""
        async with self.sem, self.slots or contextlib.nullcontext():
            for attempt in range(self.retries + 1):
                if self.empty_from is not None and start >= self.empty_from:
                    return  # an earlier chunk found the end of the video: the header claimed more
                frames, processed, decoded, covered = [], 0, 0, 0.0
                room = (end if end is not None else self.stage["video_s_total"]) - start
                try:
                    # the detector runs at the hysteresis threshold; the builder keeps what reaches min_score
                    async for item in self.detector.detect_chunk(
                        path, start, end, options=options, rate=rate, roots=self.roots, max_pixels=self.max_pixels
                    ):
                        if item.get("done"):
                            decoded = item["frames_decoded"]
                            break
                        frames.extend(item["frames"])
                        processed += item["processed"]
                        self.done += item["processed"]
                        covered += self._advance(item["processed"], room - covered)
                        await self.on_progress(self.done, self.stage)
                except Exception as exc:
                    if video_error_of(exc) is not None:
                        raise
                    self.done -= processed
                    self.stage["video_s_done"] = round(max(self.stage["video_s_done"] - covered, 0.0), 3)
                    if attempt == self.retries:
                        raise
                    logger.warning("%s chunk %s-%s failed (%s); retrying", path, start, end, type(exc).__name__)
                    await asyncio.sleep(min(1.0 * 2**attempt, 10.0))
                    continue
                if counts:
                    self.decoded += decoded
                if counts and decoded == 0 and start > 0 and start > self.last_packet_s:
                    self.empty_from = start if self.empty_from is None else min(self.empty_from, start)
                covered += self._advance(1 << 30, room - covered)  # the chunk is done: all of its time is
                await self.on_progress(self.done, self.stage)
                for f in frames:
                    builder.add_frame(f.frame_no, f.timestamp_s, f.detections)
                builder.processed += processed - len(frames)
                return


def _holds_packets(times: np.ndarray, start: float, end: float | None) -> bool:
    i = int(np.searchsorted(times, start - 1e-6, side="left"))
    return i < len(times) and (end is None or float(times[i]) < end - 1e-6)


def _first_cause(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def public_error(exc: BaseException, name: str) -> str:
    """What a caller is told about a failure: the project's own message, with the file named as the
    caller named it. Ray's wrapping (traceback, paths, pid, node, actor) stays in the server log."""
    bad_video = video_error_of(exc)
    if bad_video is not None:
        return bad_video.public(name)
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, PathNotAllowedError):
        return f"refused: {cause}"
    if isinstance(cause, ClockworkError):
        return f"detection failed: {str(cause).splitlines()[0][:300]}"
    return f"detection failed: {type(cause).__name__} (details are in the server log)"


class JobRunner:
    def __init__(self, args: AppArgs, catalog: Catalog, detector: DetectorClient, metrics: IngressMetrics):
        self.args = args
        self.catalog = catalog
        self.detector = detector
        self.metrics = metrics
        self.owner = uuid.uuid4().hex
        self.policy = HostPolicy(tuple(args.postback_allow), tuple(args.postback_deny))
        self.retry = RetryPolicy(
            args.postback_max_attempts, args.postback_base_delay_s, args.postback_max_delay_s, args.postback_timeout_s
        )
        self.tasks: dict[str, asyncio.Task] = {}
        self.detecting: set[str] = set()  # jobs whose detection runs here (a cancellation stops these)
        # postbacks in flight at once: a crowd of slow receivers holds these, nothing else
        self.postback_slots = asyncio.Semaphore(args.max_postbacks_in_flight)
        self.chunk_slots = asyncio.Semaphore(args.max_chunks_total) if args.max_chunks_total else None
        self.check_slots = asyncio.Semaphore(args.video_checks_in_flight)  # FIFO: the earliest post is checked first

    # -- scheduling ------------------------------------------------------------------------------

    def start(self, job_id: str, info: VideoInfo | None = None) -> None:
        """Run a job here unless it runs here already; ``info``: its video as POST just checked it (``check``),
        so the run does not check it again (a job resumed after a restart has none and is checked anew)."""
        if job_id not in self.tasks:
            task = asyncio.get_running_loop().create_task(self._run(job_id, info))
            self.tasks[job_id] = task
            task.add_done_callback(lambda t, j=job_id: self.tasks.pop(j) if self.tasks.get(j) is t else None)

    def cancel_local(self, job_id: str) -> None:
        """Stop this replica's task for a job just cancelled (other replicas see it at their next heartbeat)."""
        task = self.tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def reap_forever(self) -> None:
        """Resume jobs whose lease expired (their runner died), start postback attempts that are due,
        and refresh the job gauges."""
        failing = False
        while True:
            try:
                for job_id in await asyncio.to_thread(self.catalog.orphaned_jobs):
                    self.start(job_id)
                counts = await asyncio.to_thread(self.catalog.counts_by_status)
                for status, n in counts.items():
                    self.metrics.jobs.set(n, tags={"status": status})
                self.metrics.queue_depth.set(counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING])
                failing = False
            except Exception as exc:
                if not failing:  # once per outage, not every pass
                    logger.exception("reaper pass failed: %s", type(exc).__name__)
                failing = True
            await asyncio.sleep(self.args.reaper_interval_s)

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.args.lease_s / 3)
            try:
                await asyncio.to_thread(self.catalog.renew, job_id, self.owner, self.args.lease_s)
                job = await asyncio.to_thread(self.load, job_id)
            except Exception as exc:
                logger.warning("job %s: lease renewal failed (%s)", job_id, type(exc).__name__)
                continue
            if job is not None and job.status == JobStatus.CANCELLED and job_id in self.detecting:
                self.cancel_local(job_id)  # cancelled through another replica: stop, then post the cancellation back
                asyncio.get_running_loop().call_soon(self.start, job_id)
                return

    async def _run(self, job_id: str, info: VideoInfo | None = None) -> None:
        try:
            if not await asyncio.to_thread(self.catalog.claim, job_id, self.owner, self.args.lease_s):
                return
        except Exception as exc:
            logger.warning("job %s: cannot claim it (%s); the reaper will retry", job_id, type(exc).__name__)
            return
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job_id))
        try:
            job = await asyncio.to_thread(self.load, job_id)
            if JobStatus(job.status).active:
                await self._detect_job(job, info)
                job = await asyncio.to_thread(self.load, job_id)
            if job.postback_url and not job.postback_delivered and not job.postback_gave_up:
                await self._postback(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s: runner failed; the reaper will resume it", job_id)
            return  # keep the lease until it expires, then another pass resumes it
        finally:
            beat.cancel()
        try:
            await asyncio.to_thread(self.catalog.release, job_id, self.owner)
        except Exception as exc:
            logger.warning("job %s: lease release failed (%s); it expires instead", job_id, type(exc).__name__)

    def load(self, job_id: str) -> Job | None:
        return self.catalog.job(job_id)

    def name_of(self, job: Job) -> str:
        return job.filename or relative_name(job.video_path, self.args.media_roots)

    # -- detection -------------------------------------------------------------------------------

    async def _detect_job(self, job: Job, checked: VideoInfo | None = None) -> None:
        if job.attempts >= self.args.max_job_attempts:
            await asyncio.to_thread(
                self._finish,
                job,
                None,
                (f"gave up after {job.attempts} attempts: the app or its detector stopped during each run"),
            )
            return
        await asyncio.to_thread(self.catalog.start_job, job.id, attempts=job.attempts + 1)
        t0 = time.perf_counter()
        last_write = [0.0]

        async def progress(
            done: int, stage: dict
        ) -> None:  # best effort: a catalog that cannot write now fails the job at its end
            now = time.monotonic()
            if now - last_write[0] >= 0.5 or stage["video_s_done"] >= stage["video_s_total"]:
                last_write[0] = now
                try:
                    await asyncio.to_thread(
                        self.catalog.record_progress, job.id, frames_done=done, progress=dict(stage)
                    )
                except Exception as exc:
                    logger.warning("job %s: progress not recorded (%s)", job.id, type(exc).__name__)

        self.detecting.add(job.id)
        fanout = ChunkFanout(
            self.detector,
            chunk_s=self.args.chunk_s,
            max_in_flight=self.args.max_chunks_in_flight,
            retries=self.args.chunk_retries,
            on_progress=progress,
            roots=self.args.media_roots,
            slots=self.chunk_slots,
            max_pixels=self.args.max_frame_pixels,
        )
        try:
            info = checked or await self.check(job.video_path)
            await asyncio.to_thread(self.catalog.set_frames_total, job.id, info.frames_total)
            options = DetectOptions.from_json(job.params)
            document, timings = await fanout.run(job.video_path, info, options, await self.detector.model_info())
        except Exception as exc:  # a bad video, or a chunk that kept failing after its retries
            if video_error_of(exc) is None:
                logger.error("job %s: detection failed", job.id, exc_info=exc)
            await asyncio.to_thread(self._finish, job, None, public_error(exc, self.name_of(job))[:2000])
            return
        finally:
            self.detecting.discard(job.id)
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        self.metrics.job_seconds.observe(timings["total_s"])
        await asyncio.to_thread(self._finish, job, document, None, timings)

    async def check(self, path: str) -> VideoInfo:
        """``checked_info`` in a worker thread, at most ``video_checks_in_flight`` at once, in the order asked."""
        async with self.check_slots:
            return await asyncio.to_thread(self.checked_info, path)

    def checked_info(self, path: str) -> VideoInfo:
        """The video as the runner plans it: confined to the media roots when the file is opened, inside the
        limits, and with the duration the packets show when the header claims more (a duration bomb)."""
        with open_confined(path, self.args.media_roots) as opened:
            try:
                info = replace(probe(opened, max_pixels=self.args.max_frame_pixels), path=path)
            except VideoError as exc:
                raise type(exc)(path, exc.reason) from None
            real = measured_duration(opened, info.duration_s)
            check_complete(opened, info, name=path)
        if real is not None and real < 0.9 * info.duration_s - 1:
            logger.warning(
                "%s: the header claims %.1f s, the packets end at %.1f s; planning from the packets",
                path,
                info.duration_s,
                real,
            )
            info = replace(info, duration_s=real, frames_total=info.frames_listed or round(real * (info.fps or 30.0)))
        if info.duration_s > self.args.max_duration_s:
            raise VideoTooLargeError(
                path, f"it lasts {info.duration_s:.0f} s, over the limit of {self.args.max_duration_s:.0f} s"
            )
        return info

    def _finish(self, job: Job, document: dict | None, error: str | None, timings: dict | None = None) -> None:
        status = self.catalog.finish_job(
            job.id,
            document=document,
            error=error,
            timings=timings,
            params=DetectOptions.from_json(job.params).to_json(),
        )
        if status is not None:  # None: cancelled while it ran, and the cancellation stands
            self.metrics.jobs_finished.inc(tags={"status": status})

    # -- postback --------------------------------------------------------------------------------

    def postback_body(self, job_id: str) -> bytes:
        """The exact bytes posted back; GET /jobs/{id}/result serves the same document."""
        job, document = self.catalog.outcome(job_id)
        if document is not None:
            doc = {"job_id": job.id, "status": JobStatus.SUCCEEDED.value, **document}
        else:
            doc = {**failure_document(job, job.error or "unknown error"), "status": job.status}
        return json.dumps(doc, separators=(",", ":")).encode()

    async def _postback(self, job: Job) -> None:
        """One attempt, if one is due; the next is scheduled in the catalog, where the reaper finds it."""
        if job.postback_next_at is not None and job.postback_next_at > utcnow():
            return
        body = await asyncio.to_thread(self.postback_body, job.id)
        async with self.postback_slots:
            state, attempt = await deliver_once(
                job.postback_url,
                body,
                policy=self.policy,
                retry=self.retry,
                secret=self.args.postback_secret,
                job_id=job.id,
                delivery_id=f"{job.id}.{job.deliveries or 1}",
                attempts_so_far=job.postback_attempts,
            )
        if attempt is not None:
            self.metrics.stage_seconds.observe(attempt.seconds, tags={"stage": "postback"})
            self.metrics.postback_attempts.inc(tags={"outcome": "delivered" if attempt.ok else "error"})
        if state.gave_up:
            self.metrics.postback_failures.inc()
            logger.warning(
                "job %s: postback given up after %d attempt(s): %s", job.id, state.attempts, state.last_error
            )
        entry = {
            "at": _iso(utcnow()),
            "status": attempt.status if attempt else None,
            "error": state.last_error,
            "seconds": round(attempt.seconds, 3) if attempt else 0.0,
        }
        next_at = utcnow() + dt.timedelta(seconds=state.retry_in_s) if state.retry_in_s is not None else None
        await asyncio.to_thread(
            self.catalog.record_postback,
            job.id,
            attempts=state.attempts,
            delivered=state.delivered,
            gave_up=state.gave_up,
            last_error=state.last_error,
            next_at=next_at,
            entry=entry,
            keep=HISTORY_KEPT,
        )


HISTORY_KEPT = 20  # postback attempts listed in GET /jobs/{id}


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() + "Z" if t else None


def job_status(job: Job, name: str, base_url: str = "") -> dict:
    """GET /jobs/{id}: ``name`` is the file as the caller named it; URLs are relative to ``base_url``."""
    return {
        "job_id": job.id,
        "status": job.status,
        "filename": name,
        "progress": {
            "frames_done": job.frames_done,
            "frames_total": job.frames_total,
            **(job.progress or {"stage": None, "video_s_done": 0.0, "video_s_total": 0.0}),
        },
        "timings": {
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            **(job.timings or {}),
        },
        "error": job.error,
        "attempts": job.attempts,
        "postback": None
        if not job.postback_url
        else {
            "url": job.postback_url,
            "attempts": job.postback_attempts,
            "delivered": job.postback_delivered,
            "gave_up": job.postback_gave_up,
            "last_error": job.postback_last_error,
            "next_attempt_at": _iso(job.postback_next_at),
            "history": job.postback_history or [],
        },
        "result_url": f"{base_url}/jobs/{job.id}/result",
    }
