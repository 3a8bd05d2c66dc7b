"""The HTTP contract, on Starlette, with no Ray inside: ``build_app(Api(args, detector)) -> Starlette``.

    POST /video-inference   {"filename", "postback_url"?, "labels"?, "min_score"?, "scan"?, "sample_fps"?, "views"?,
    "multiscale_fps"?,
                             "read_time"?} -> 202
    GET  /jobs              the jobs, newest first: ?status=&limit=&offset=
    GET  /jobs/{id}         status, progress, timings, error, postback state and history
    DELETE /jobs/{id}       cancel a queued or running job
    POST /jobs/{id}/postback  deliver the result again (a new delivery id)
    GET  /jobs/{id}/result  the result document, byte for byte what is posted back
    GET  /healthz           liveness: the process answers and can read the catalog
    GET  /readyz            readiness: the catalog takes writes and a detector replica answers (else 503)
    GET  /openapi.json      the contract as OpenAPI 3.1; GET /docs shows it as a page (offline, no CDN)

The Serve Ingress deployment builds this app around a Ray handle to the detector
(``serve_app.ingress``); tests build it around an in-process detector and call it with Starlette's
TestClient. Validation raises :class:`ApiError`; one exception handler turns it into the JSON error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clockwork import version
from clockwork.errors import VideoError, VideoNotFoundError, unknown_label_message
from clockwork.settings import DETECT
from clockwork.store.catalog import Catalog, Job, JobStatus, QueueFullError
from clockwork.store.postback import PostbackURLError
from clockwork.timeline.options import DetectOptions
from clockwork.video.decode import VideoInfo
from clockwork.video.media import PathNotAllowedError, resolve_in_roots
from serve_app.auth import bearer_matches, check_same_site
from serve_app.client import DetectorClient
from serve_app.config import AppArgs
from serve_app.errors import ApiError
from serve_app.metrics import IngressMetrics
from serve_app.runner import JobRunner, job_status

logger = logging.getLogger("clockwork.serve")

RETRY_AFTER_S = 5
READY_TIMEOUT_S = 5.0
MAX_KEY_LENGTH = 255  # Idempotency-Key
MIN_SAMPLE_FPS = 0.01  # one frame every 100 s; 0 means every frame


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: StrictStr = Field(min_length=1, max_length=4096)
    postback_url: StrictStr | None = Field(None, min_length=1, max_length=2048)
    labels: list[StrictStr] | None = Field(None, min_length=1, max_length=80)
    min_score: StrictFloat | StrictInt | None = Field(None, ge=0, le=1)
    sample_fps: StrictFloat | StrictInt | None = Field(
        None, ge=0, le=1000, description="sampled mode: frames a second; 0: every frame"
    )
    scan: StrictBool | None = Field(None, description="coarse-to-fine scan (default: on unless sample_fps is given)")
    views: list[Literal["full", "zoomout", "tiles"]] | None = Field(None, min_length=1, max_length=3)
    multiscale_fps: StrictFloat | StrictInt | None = Field(
        None,
        ge=0,
        le=1000,
        description="where every frame is examined, the "
        "views after the first run this many frames a second; 0: every frame",
    )
    read_time: StrictBool = DETECT.read_time


class Api:
    """The handlers and the job runner behind them."""

    def __init__(self, args: AppArgs, detector: DetectorClient, metrics: IngressMetrics | None = None):
        self.args = args
        self.catalog = Catalog(args.database_url)
        self.metrics = metrics or IngressMetrics()
        self.detector = detector
        self.runner = JobRunner(args, self.catalog, detector, self.metrics)
        # the app's defaults for what a request leaves out (its builder arguments; clockwork.settings otherwise)
        self.defaults = DetectOptions(
            labels=tuple(args.labels),
            min_score=args.min_score,
            scan=args.scan,
            sample_fps=None if args.scan else (args.sample_fps or None),
            views=tuple(args.views),
            multiscale_fps=args.multiscale_fps or None,
        )
        self._reaper: asyncio.Task | None = None
        self._labels: list[str] | None = None

    def ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self.runner.reap_forever())

    def authorise(self, request: Request) -> None:
        token = self.args.api_token
        if not token:
            return
        if not bearer_matches(request, token):
            raise ApiError(401, "missing or wrong bearer token")

    def same_site(self, request: Request) -> None:
        check_same_site(request, self.args)

    # -- routes ----------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        self.ensure_reaper()
        try:
            await asyncio.to_thread(self.catalog.count_active)
        except Exception as exc:
            raise ApiError(503, f"catalog unavailable: {type(exc).__name__}") from None
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Readiness: the catalog takes a write and a detector replica answers. 503 names what is missing."""
        self.ensure_reaper()
        problems = []
        try:
            await asyncio.to_thread(self.catalog.write_check, self.runner.owner)
        except Exception as exc:
            problems.append(f"the catalog cannot be written ({type(exc).__name__})")
        try:
            await asyncio.wait_for(self.detector.ping(), READY_TIMEOUT_S)
        except Exception as exc:
            problems.append(f"no detector replica answered within {READY_TIMEOUT_S:g} s ({type(exc).__name__})")
        if problems:
            raise ApiError(503, "not ready: " + "; ".join(problems), problems=problems, retry_after=RETRY_AFTER_S)
        return JSONResponse({"status": "ready"})

    async def submit(self, request: Request) -> Response:
        self.ensure_reaper()
        self.same_site(request)
        self.authorise(request)
        key = request.headers.get("idempotency-key") or None
        if key is not None and (len(key) > MAX_KEY_LENGTH or not key.isprintable()):
            raise ApiError(400, f"Idempotency-Key must be at most {MAX_KEY_LENGTH} printable characters")
        req = self._validate(await self._json_object(request))
        job, created = await self.admit(req, key)
        return self._accepted(request, job, replayed=not created)

    async def admit(self, req: InferenceRequest, key: str | None = None) -> tuple[Job, bool]:
        """A validated request becomes a job (or the existing one for its key or body): the file is checked, the job
        admitted against the queue limit and started. Returns the job and whether it is new."""
        params = (await self._options(req)).to_json()
        path = self._path_of(req.filename)
        if req.postback_url is not None:
            await self._check_postback(req.postback_url)
        info = await self._check_video(path, req.filename)
        body_hash = hashlib.sha256(
            json.dumps({"path": str(path), "postback_url": req.postback_url, **params}, sort_keys=True).encode()
        ).hexdigest()
        job = Job(
            video_path=str(path),
            filename=req.filename,
            params=params,
            postback_url=req.postback_url,
            idempotency_key=key,
            body_hash=body_hash,
            dedupe_key=f"key:{key}" if key else f"body:{body_hash}",
        )
        try:
            job, created = await asyncio.to_thread(
                self.catalog.admit, job, max_active=self.args.max_active_jobs, window_s=self.args.idempotency_window_s
            )
        except QueueFullError as exc:
            raise ApiError(429, str(exc), retry_after=RETRY_AFTER_S) from None
        if not created and key and job.body_hash != body_hash:
            raise ApiError(
                422,
                "this Idempotency-Key was used with a different request body; use a new key for a new request",
                job_id=job.id,
            )
        if created:
            self.runner.start(job.id, info)
        return job, created

    async def status(self, request: Request) -> Response:
        self.authorise(request)
        job = await self._job(request.path_params["job_id"])
        return JSONResponse(job_status(job, self.runner.name_of(job), _base(request, self.args.public_url)))

    async def list_jobs(self, request: Request) -> Response:
        self.authorise(request)
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in {s.value for s in JobStatus}:
            raise ApiError(
                400, f"Invalid status {status!r}. Supported values are {', '.join(s.value for s in JobStatus)}."
            )
        limit, offset = _int_param(q, "limit", 50, 1, 500), _int_param(q, "offset", 0, 0, 10**9)
        jobs, total = await asyncio.to_thread(self.catalog.list_jobs, status=status, limit=limit, offset=offset)
        base = _base(request, self.args.public_url)
        more = offset + len(jobs) < total
        return JSONResponse(
            {
                "jobs": [job_status(j, self.runner.name_of(j), base) for j in jobs],
                "total": total,
                "next": f"{base}/jobs?limit={limit}&offset={offset + limit}" + (f"&status={status}" if status else "")
                if more
                else None,
            }
        )

    async def cancel(self, request: Request) -> Response:
        self.same_site(request)
        self.authorise(request)
        job = await self._job(request.path_params["job_id"])
        cancelled = await asyncio.to_thread(self.catalog.cancel, job.id)
        if not cancelled:
            raise ApiError(
                409,
                f"job {job.id} is {job.status}; only queued or running jobs can be cancelled",
                job_status=job.status,
            )
        self.runner.cancel_local(job.id)
        self.runner.start(job.id)  # the cancellation is posted back like any other end
        job = await self._job(job.id)
        return JSONResponse(
            job_status(job, self.runner.name_of(job), _base(request, self.args.public_url)), status_code=202
        )

    async def redeliver(self, request: Request) -> Response:
        self.same_site(request)
        self.authorise(request)
        job = await self._job(request.path_params["job_id"])
        if not job.postback_url:
            raise ApiError(409, f"job {job.id} has no postback_url")
        if not JobStatus(job.status).final:
            raise ApiError(
                409, f"job {job.id} is {job.status}; its result is posted when it ends", job_status=job.status
            )
        await asyncio.to_thread(self.catalog.redeliver, job.id)
        self.runner.start(job.id)
        job = await self._job(job.id)
        return JSONResponse(
            job_status(job, self.runner.name_of(job), _base(request, self.args.public_url)), status_code=202
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def docs(self, request: Request) -> Response:
        from serve_app.ui import render_docs

        a = self.args
        defaults = {
            "labels": a.labels,
            "min_score": a.min_score,
            "sample_fps": a.sample_fps if not a.scan else None,
            "scan": a.scan,
            "views": a.views,
            "multiscale_fps": a.multiscale_fps,
            "read_time": DETECT.read_time,
        }
        return render_docs(request, openapi_document(), defaults)

    async def result(self, request: Request) -> Response:
        self.authorise(request)
        job = await self._job(request.path_params["job_id"])
        if not JobStatus(job.status).final:
            raise ApiError(409, f"job {job.id} is {job.status}; no result yet", job_status=job.status)
        body = await asyncio.to_thread(self.runner.postback_body, job.id)
        return Response(body, media_type="application/json")

    # -- the steps of a submission ----------------------------------------------------------------

    async def _json_object(self, request: Request) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":  # a form or text/plain body is a browser's cross-site "simple" request
            raise ApiError(
                415, f"Content-Type must be application/json, got {kind[:60] or 'none'!r}", content_type=kind[:60]
            )
        limit = self.args.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit} bytes", limit=limit)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes", limit=limit)
        try:
            payload = json.loads(body)
        except RecursionError:
            raise ApiError(400, "malformed JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, and integers over Python's digit limit
            raise ApiError(400, f"malformed JSON: {str(exc)[:200]}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, f"the body must be a JSON object, got {type(payload).__name__}")
        return payload

    @staticmethod
    def _validate(payload: dict) -> InferenceRequest:
        try:
            return InferenceRequest(**payload)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
            raise ApiError(400, "invalid request: " + "; ".join(problems), problems=problems) from None

    async def _labels_of(self, req: InferenceRequest) -> list[str]:
        labels = req.labels or self.args.labels
        if self._labels is None:
            self._labels = await self.detector.labels()
        unknown = [label for label in labels if label not in self._labels]
        if unknown:
            raise ApiError(400, unknown_label_message(unknown[0], self._labels), unknown=unknown)
        return list(labels)

    async def _options(self, req: InferenceRequest) -> DetectOptions:
        """The request's options, built once: what it names, the app's defaults for the rest
        (``DetectOptions.resolve``)."""
        for name in ("sample_fps", "multiscale_fps"):
            rate = getattr(req, name)
            if rate is not None and (not math.isfinite(rate) or 0 < rate < MIN_SAMPLE_FPS):
                raise ApiError(400, f"invalid request: {name} must be 0 (every frame) or from {MIN_SAMPLE_FPS} to 1000")
        labels = await self._labels_of(req)
        try:
            return DetectOptions.resolve(
                scan=req.scan,
                sample_fps=req.sample_fps,
                defaults=self.defaults,
                default_sample_fps=self.args.sample_fps,
                labels=labels,
                min_score=req.min_score,
                views=req.views,
                multiscale_fps=req.multiscale_fps,
                read_time=req.read_time,
            )
        except ValueError as exc:
            raise ApiError(400, f"invalid request: {exc}") from None

    def _path_of(self, filename: str) -> Path:
        try:
            path = resolve_in_roots(filename, self.args.media_roots)
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), filename=filename) from None
        try:
            found = path.is_file()
        except OSError:
            found = False
        if not found:
            raise ApiError(
                404,
                f"video not found: {filename} (file names are relative to the server's media roots)",
                filename=filename,
            )
        return path

    async def _check_postback(self, url: str) -> None:
        try:
            await self.runner.policy.acheck(url)
        except PostbackURLError as exc:
            raise ApiError(400, str(exc), postback_url=url) from None

    async def _check_video(self, path: Path, filename: str) -> VideoInfo:
        """Header, first frame and tail (cheap): a file is refused here, with its name as given, when it is not a
        usable video or is over the limits. The job's run starts from what this found."""
        try:
            return await self.runner.check(str(path))
        except VideoNotFoundError as exc:
            raise ApiError(404, exc.public(filename), filename=filename) from None
        except VideoError as exc:
            raise ApiError(422, exc.public(filename), filename=filename, reason=exc.reason) from None
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), filename=filename) from None

    async def _job(self, job_id: str) -> Job:
        job = await asyncio.to_thread(self.runner.load, job_id)
        if job is None:
            raise ApiError(404, f"unknown job {job_id!r}")
        return job

    def _accepted(self, request: Request, job: Job, *, replayed: bool) -> JSONResponse:
        status_url = f"{_base(request, self.args.public_url)}/jobs/{job.id}"
        headers = {"Location": status_url, **({"Idempotent-Replayed": "true"} if replayed else {})}
        return JSONResponse(
            {"job_id": job.id, "status_url": status_url, "status": job.status or JobStatus.QUEUED.value},
            status_code=202,
            headers=headers,
        )


class RequestCounter:
    """ASGI middleware: every HTTP answer, the API's and the pages', counted by route template and status. A path that
    matches no route counts as "unmatched", so probes of random paths cannot grow the metric without bound."""

    def __init__(self, app: ASGIApp, *, counter, routes: list[Route]):
        self.app, self.counter, self.routes = app, counter, routes

    def template(self, path: str) -> str:
        route = next((r.path for r in self.routes if r.path_regex.match(path)), "unmatched")
        return route.replace("{job_id}", "{id}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.counter.inc(tags={"route": self.template(scope["path"]), "status": str(status[0])})


@dataclass(frozen=True)
class Endpoint:
    """One route of the API: Starlette serves it and the OpenAPI document describes it, from this one entry."""

    method: str
    path: str
    handler: str  # the Api method that answers it
    summary: str
    ok: int  # the success status
    schema: dict | None  # the success body's JSON schema (None: not JSON)
    secured: bool = True  # needs the bearer token when the app has one
    query: tuple[dict, ...] = ()
    media_type: str = "application/json"


ENDPOINTS = (
    Endpoint(
        "POST",
        "/video-inference",
        "submit",
        "Submit a video (a JSON body; Idempotency-Key optional)",
        202,
        {"$ref": "#/components/schemas/Accepted"},
    ),
    Endpoint(
        "GET",
        "/jobs",
        "list_jobs",
        "The jobs, newest first, with paging",
        200,
        {"$ref": "#/components/schemas/JobList"},
        query=(
            {
                "name": "status",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": [st.value for st in JobStatus]},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": 10**9},
            },
        ),
    ),
    Endpoint(
        "GET",
        "/jobs/{job_id}",
        "status",
        "A job: status, progress, timings, error, postback and its history",
        200,
        {"$ref": "#/components/schemas/JobStatus"},
    ),
    Endpoint(
        "DELETE",
        "/jobs/{job_id}",
        "cancel",
        "Cancel a queued or running job (409 when it already ended)",
        202,
        {"$ref": "#/components/schemas/JobStatus"},
    ),
    Endpoint(
        "GET",
        "/jobs/{job_id}/result",
        "result",
        "The result document, byte for byte what was posted back (409 before the end)",
        200,
        {"type": "object"},
    ),
    Endpoint(
        "POST",
        "/jobs/{job_id}/postback",
        "redeliver",
        "Deliver the result again (409 without postback_url or before the end)",
        202,
        {"$ref": "#/components/schemas/JobStatus"},
    ),
    Endpoint("GET", "/openapi.json", "openapi", "This document", 200, {"type": "object"}, secured=False),
    Endpoint("GET", "/docs", "docs", "This document as a page", 200, None, secured=False, media_type="text/html"),
    Endpoint(
        "GET",
        "/healthz",
        "healthz",
        "Liveness: the process answers and reads the catalog",
        200,
        {"$ref": "#/components/schemas/Health"},
        secured=False,
    ),
    Endpoint(
        "GET",
        "/readyz",
        "readyz",
        "Readiness: the catalog takes a write and a detector replica answers (503 naming what is missing)",
        200,
        {"$ref": "#/components/schemas/Health"},
        secured=False,
    ),
)


def build_app(api: Api) -> Starlette:
    """The Starlette app: the routes of ``ENDPOINTS`` and the web pages, one handler for :class:`ApiError`, JSON
    404/405 (405 with ``Allow``), and every request counted by route and status (:class:`RequestCounter`)."""

    def answered(path: str, handler):
        """The route's answer, its errors as JSON: the catalog unreachable is 503, anything unforeseen 500."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except OperationalError as exc:  # the catalog cannot be reached or written (a full disk among others)
                logger.error("%s %s: catalog error: %s", request.method, path, exc)
                return ApiError(
                    503, "the catalog is unavailable; try again later", retry_after=RETRY_AFTER_S
                ).response()
            except Exception:
                logger.exception("%s %s failed", request.method, path)
                return ApiError(500, "internal error; the server log has the details").response()

        return endpoint

    from serve_app.ui import Ui

    routes = [Route(e.path, answered(e.path, getattr(api, e.handler)), methods=[e.method]) for e in ENDPOINTS]
    routes += [Route(path, endpoint, methods=methods) for path, endpoint, methods in Ui(api).routes()]
    app = Starlette(routes=routes, middleware=[Middleware(RequestCounter, counter=api.metrics.requests, routes=routes)])
    app.state.api = api
    app.add_exception_handler(ApiError, lambda request, exc: exc.response())
    app.add_exception_handler(404, lambda req, exc: ApiError(404, f"no route {req.method} {req.url.path}").response())

    def not_allowed(req: Request, exc) -> Response:
        # every method the path takes, over all of its routes (Starlette names only the first route's)
        methods = {
            m for r in app.routes if isinstance(r, Route) and r.path_regex.match(req.url.path) for m in r.methods or ()
        }
        return ApiError(405, f"method {req.method} not allowed on {req.url.path}", allow=sorted(methods)).response(
            headers={"Allow": ", ".join(sorted(methods))}
        )

    app.add_exception_handler(405, not_allowed)
    return app


def _int_param(q, name: str, default: int, low: int, high: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not low <= int(raw) <= high:
        raise ApiError(400, f"Invalid {name} {raw[:20]!r}. Supported values are integers from {low} to {high}.")
    return int(raw)


STATUS_SCHEMA = {
    "type": "object",
    "required": ["job_id", "status", "filename", "progress", "timings", "attempts", "result_url"],
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": [st.value for st in JobStatus]},
        "filename": {"type": "string"},
        "error": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "result_url": {"type": "string"},
        "timings": {"type": "object"},
        "progress": {
            "type": "object",
            "required": ["frames_done", "frames_total"],
            "properties": {
                "frames_done": {"type": "integer"},
                "frames_total": {"type": "integer"},
                "stage": {"type": ["string", "null"]},
                "video_s_done": {"type": "number"},
                "video_s_total": {"type": "number"},
            },
        },
        "postback": {"type": ["object", "null"]},
    },
}
RATE_SCHEMA = {
    "anyOf": [{"type": "null"}, {"const": 0}, {"type": "number", "minimum": MIN_SAMPLE_FPS, "maximum": 1000}]
}


def openapi_document() -> dict:
    """The contract as OpenAPI 3.1, from ``ENDPOINTS`` (the routes the app serves) and the request model itself."""
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["error", "status"],
    }
    request_schema = InferenceRequest.model_json_schema()
    for name in ("sample_fps", "multiscale_fps"):  # 0 (every frame) or at least MIN_SAMPLE_FPS: more than ge/le says
        request_schema["properties"][name] = {
            **RATE_SCHEMA,
            "description": request_schema["properties"][name].get("description", ""),
        }
    paths: dict = {}
    for e in ENDPOINTS:
        content = {e.media_type: {"schema": e.schema}} if e.schema is not None else {e.media_type: {}}
        op: dict = {
            "summary": e.summary,
            "operationId": e.handler,
            "responses": {
                str(e.ok): {"description": e.summary.split(" (")[0], "content": content},
                "default": {"description": "JSON error", "content": {"application/json": {"schema": error}}},
            },
            "security": [{"bearer": []}] if e.secured else [],
        }
        params = list(e.query)
        if "{job_id}" in e.path:
            params.append({"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}})
        if e.path == "/video-inference":
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
            }
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
                }
            )
        if params:
            op["parameters"] = params
        paths.setdefault(e.path, {})[e.method.lower()] = op
    paths["/ui"] = {
        "get": {
            "summary": "Web pages for people (jobs, videos, library, remixes); signed in with the token",
            "operationId": "ui",
            "security": [],
            "responses": {"307": {"description": "to /ui/jobs"}, "303": {"description": "to the sign-in form"}},
        }
    }
    schemas = {
        "InferenceRequest": request_schema,
        "Accepted": {
            "type": "object",
            "required": ["job_id", "status_url", "status"],
            "properties": {
                "job_id": {"type": "string"},
                "status_url": {"type": "string"},
                "status": {"type": "string"},
            },
        },
        "JobStatus": STATUS_SCHEMA,
        "JobList": {
            "type": "object",
            "required": ["jobs", "total", "next"],
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobStatus"}},
                "total": {"type": "integer"},
                "next": {"type": ["string", "null"]},
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Clockwork API", "version": version()},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _base(request: Request, public_url: str | None = None) -> str:
    """The configured public URL, else a path relative to the server (never the client's Host header)."""
    if public_url:
        return public_url.rstrip("/")
    return request.scope.get("root_path", "").rstrip("/")
