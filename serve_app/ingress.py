"""The Ingress deployment (CPU only): the HTTP contract, validation and safety, on Starlette.

    POST /video-inference   {"filename", "postback_url", "labels"?, "min_score"?, "sample_fps"?} -> 202
    GET  /jobs/{id}         status, progress, timings, error, postback state
    GET  /jobs/{id}/result  the result document, byte for byte what is posted back
    GET  /healthz
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError
from ray import serve
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clockwork.catalog import Catalog, Job
from clockwork.decode import probe
from clockwork.errors import VideoError, VideoNotFoundError
from clockwork.media import PathNotAllowedError, resolve_in_roots
from clockwork.postback import PostbackURLError
from serve_app.config import AppArgs
from serve_app.metrics import IngressMetrics
from serve_app.runner import JobRunner, find_job, job_status

logger = logging.getLogger("clockwork.serve")

RETRY_AFTER_S = 5


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: StrictStr = Field(min_length=1, max_length=4096)
    postback_url: StrictStr = Field(min_length=1, max_length=2048)
    labels: list[StrictStr] | None = Field(None, min_length=1, max_length=80)
    min_score: StrictFloat | StrictInt | None = Field(None, ge=0, le=1)
    sample_fps: StrictFloat | StrictInt | None = Field(None, gt=0, le=1000)


def error(status: int, message: str, **fields) -> JSONResponse:
    headers = {"Retry-After": str(fields.pop("retry_after"))} if "retry_after" in fields else None
    return JSONResponse({"error": message, "status": status, **fields}, status_code=status, headers=headers)


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=200)
@serve.ingress()
class Ingress:
    def __init__(self, detector, args: dict | None = None):
        self.args = AppArgs(**(args or {}))
        self.catalog = Catalog(self.args.database_url)
        self.metrics = IngressMetrics()
        self.runner = JobRunner(self.args, self.catalog, detector, self.metrics)
        self.detector = detector
        self._reaper: asyncio.Task | None = None
        self._labels: list[str] | None = None
        try:  # Serve runs the constructor on the replica's event loop: resume orphaned jobs at once
            asyncio.get_running_loop()
            self._ensure_reaper()
        except RuntimeError:
            pass  # no loop here; the first request starts the reaper

    def __serve_build_asgi_app__(self):
        app = Starlette(routes=[
            Route("/video-inference", self.submit, methods=["POST"]),
            Route("/jobs/{job_id}", self.status, methods=["GET"]),
            Route("/jobs/{job_id}/result", self.result, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ])
        app.add_exception_handler(404, lambda req, exc: error(404, f"no route {req.method} {req.url.path}"))
        app.add_exception_handler(405, lambda req, exc: error(405, f"method {req.method} not allowed on {req.url.path}"))
        return app

    def _ensure_reaper(self):
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self.runner.reap_forever())

    def _authorised(self, request: Request) -> bool:
        token = self.args.api_token
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())

    def _count(self, route: str, resp: Response) -> Response:
        self.metrics.requests.inc(tags={"route": route, "status": str(resp.status_code)})
        return resp

    async def healthz(self, request: Request) -> Response:
        self._ensure_reaper()
        try:
            await asyncio.to_thread(self.catalog.count_active)
        except Exception as exc:
            return self._count("/healthz", error(503, f"catalog unavailable: {type(exc).__name__}"))
        return self._count("/healthz", JSONResponse({"status": "ok"}))

    async def submit(self, request: Request) -> Response:
        return self._count("/video-inference", await self._submit(request))

    async def _submit(self, request: Request) -> Response:
        self._ensure_reaper()
        if not self._authorised(request):
            return error(401, "missing or wrong bearer token")
        limit = self.args.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error(413, f"request body of {declared} bytes is over the limit of {limit} bytes", limit=limit)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return error(413, f"request body is over the limit of {limit} bytes", limit=limit)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error(400, f"malformed JSON: {exc}")
        if not isinstance(payload, dict):
            return error(400, f"the body must be a JSON object, got {type(payload).__name__}")
        try:
            req = InferenceRequest(**payload)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
            return error(400, "invalid request: " + "; ".join(problems), problems=problems)
        labels = req.labels or self.args.labels
        if self._labels is None:
            self._labels = (await self.detector.info.remote())["labels"]
        unknown = [label for label in labels if label not in self._labels]
        if unknown:
            return error(400, f"Unknown label(s) {unknown}. Supported values are the model's class names, "
                              f"e.g. {', '.join(self._labels[:5])}, ...")
        min_score = float(req.min_score if req.min_score is not None else self.args.min_score)
        sample_fps = float(req.sample_fps) if req.sample_fps is not None else None
        if sample_fps is not None and not math.isfinite(sample_fps):
            return error(400, "invalid request: sample_fps must be finite")
        try:
            path = resolve_in_roots(req.filename, self.args.media_roots)
        except PathNotAllowedError as exc:
            return error(403, str(exc), filename=req.filename)
        if not path.is_file():
            return error(404, f"video not found: {req.filename}", filename=req.filename)
        try:
            await asyncio.to_thread(self.runner.policy.check, req.postback_url)
        except PostbackURLError as exc:
            return error(400, str(exc), postback_url=req.postback_url)
        try:
            await asyncio.to_thread(probe, path)  # cheap: header and one frame
        except VideoNotFoundError as exc:
            return error(404, str(exc), filename=req.filename)
        except VideoError as exc:
            return error(422, str(exc), filename=req.filename, reason=exc.reason)
        params = {"labels": list(labels), "min_score": min_score, "sample_fps": sample_fps}
        body_hash = hashlib.sha256(json.dumps({"path": str(path), "postback_url": req.postback_url, **params},
                                              sort_keys=True).encode()).hexdigest()
        key = request.headers.get("idempotency-key") or None
        existing = await asyncio.to_thread(find_job, self.catalog, key=key, body_hash=body_hash,
                                           window_s=self.args.idempotency_window_s)
        if existing is not None:
            return self._accepted(request, existing, replayed=True)
        active = await asyncio.to_thread(self.catalog.count_active)
        if active >= self.args.max_active_jobs:
            return error(429, f"queue is full ({active} jobs queued or running, limit {self.args.max_active_jobs})",
                         retry_after=RETRY_AFTER_S)
        job = Job(video_path=str(path), params=params, postback_url=req.postback_url, idempotency_key=key,
                  body_hash=body_hash)
        try:
            await asyncio.to_thread(self._insert, job)
        except IntegrityError:  # a concurrent request with the same Idempotency-Key won the race
            existing = await asyncio.to_thread(find_job, self.catalog, key=key, body_hash=body_hash, window_s=0)
            return self._accepted(request, existing, replayed=True)
        self.runner.start(job.id)
        return self._accepted(request, job, replayed=False)

    def _insert(self, job: Job) -> None:
        with self.catalog.session() as s:
            s.add(job)
            s.flush()
            s.expunge(job)

    def _accepted(self, request: Request, job: Job, *, replayed: bool) -> JSONResponse:
        status_url = f"{_base(request)}/jobs/{job.id}"
        return JSONResponse({"job_id": job.id, "status_url": status_url, "status": job.status or "queued"},
                            status_code=202, headers={"Location": status_url, **({"Idempotent-Replayed": "true"} if replayed else {})})

    async def status(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._count("/jobs/{id}", error(401, "missing or wrong bearer token"))
        job = await asyncio.to_thread(self._get, request.path_params["job_id"])
        if job is None:
            return self._count("/jobs/{id}", error(404, f"unknown job {request.path_params['job_id']!r}"))
        return self._count("/jobs/{id}", JSONResponse(job_status(job, _base(request))))

    async def result(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._count("/jobs/{id}/result", error(401, "missing or wrong bearer token"))
        job_id = request.path_params["job_id"]
        job = await asyncio.to_thread(self._get, job_id)
        if job is None:
            return self._count("/jobs/{id}/result", error(404, f"unknown job {job_id!r}"))
        if job.status not in ("succeeded", "failed"):
            return self._count("/jobs/{id}/result", error(409, f"job {job_id} is {job.status}; no result yet",
                                                          job_status=job.status))
        body = await asyncio.to_thread(self.runner.postback_body, job_id)
        return self._count("/jobs/{id}/result", Response(body, media_type="application/json"))

    def _get(self, job_id: str) -> Job | None:
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            if job is not None:
                s.expunge(job)
            return job


def _base(request: Request) -> str:
    root = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")
