"""The web pages, served by the API itself under ``/ui`` (same ingress, same token): jobs with their
progress, one video with its segments and the frames where they start, peak and end (boxes drawn), the
library (videos with no clock found too), every remix. A video's page plays it with its boxes drawn on every
frame (``annotate_video``, drawn once per result and cached). Server-rendered (``clockwork.remix.pages``), no
JavaScript.

When the app has an API token, a browser signs in once at ``/ui/login``; the token is kept in an
HttpOnly cookie. API clients may send the bearer header instead.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from clockwork import settings
from clockwork.remix.annotate import annotate_video, frame_at, jpeg, thumbnail
from clockwork.remix.pages import Timeline, remix_view, render, segment_frames
from clockwork.store.catalog import Job, JobStatus, Scanned
from clockwork.timeline.result import VideoResult
from clockwork.video.media import list_videos, relative_name
from serve_app.auth import bearer_matches, check_same_site
from serve_app.errors import ApiError

logger = logging.getLogger("clockwork.serve")

COOKIE = "clockwork_token"
CSRF_COOKIE = "clockwork_csrf"
LOGIN_FAILURES, LOGIN_WINDOW_S = 10, 60.0  # wrong tokens an address may send a minute before it waits
REMIXES_LISTED = 200  # newest first on the remix page
PAGE_SIZE = 50
THUMB_WIDTH = 480


class Ui:
    def __init__(self, api):
        self.api = api
        self.catalog = api.catalog
        self.args = api.args
        self.cache = Path(self.args.cache_dir) if self.args.cache_dir else settings.data_dir() / "annotated"
        # annotated videos are drawn one at a time, off the event loop, each once (result id -> its drawing)
        self.drawing: dict[int, Future] = {}
        self.draw_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotate")
        self.failures: dict[str, list[float]] = {}  # client address -> times of its recent wrong tokens

    # -- plumbing ----------------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") + "/ui"

    def signed_in(self, request: Request) -> bool:
        token = self.args.api_token
        if not token:
            return True
        if bearer_matches(request, token):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), token.encode())

    def page(self, request: Request, template: str, http_status: int = 200, **context) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = render(
            template,
            ui=self.base(request),
            docs_url=request.scope.get("root_path", "").rstrip("/") + "/docs",
            signed_in_by_cookie=bool(self.args.api_token and request.cookies.get(COOKIE)),
            csrf=csrf,
            **context,
        )
        resp = HTMLResponse(html, status_code=http_status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            resp.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=request.scope.get("root_path", "") or "/"
            )
        return resp

    def check_form(self, request: Request, form: dict[str, list[str]]) -> None:
        """A form post must come from this server's pages: its Origin (when the browser sends one) and the CSRF
        token of its form, which must match the cookie the page set (double submit)."""
        check_same_site(request, self.args)
        given, cookie = form.get("csrf", [""])[0], request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
            raise ApiError(403, "this form has expired or came from another site; reload the page and try again")

    def throttled(self, request: Request) -> float | None:
        """Seconds to wait when this address has failed to sign in LOGIN_FAILURES times in LOGIN_WINDOW_S."""
        now, key = time.monotonic(), request.client.host if request.client else ""
        recent = [t for t in self.failures.get(key, []) if now - t < LOGIN_WINDOW_S]
        self.failures[key] = recent
        return LOGIN_WINDOW_S - (now - recent[0]) if len(recent) >= LOGIN_FAILURES else None

    def guarded(self, handler, *, open_route: bool = False):
        async def endpoint(request: Request) -> Response:
            if not open_route and not self.signed_in(request):  # a browser is sent to the sign-in form
                return RedirectResponse(f"{self.base(request)}/login?next={quote(request.url.path)}", status_code=303)
            try:
                return await handler(request)
            except ApiError as exc:
                title = {403: "Refused", 404: "Not found"}.get(exc.status, "Something is wrong")
                return self.page(
                    request, "message.html", http_status=exc.status, nav=None, title=title, message=str(exc)
                )
            except Exception:
                logger.exception("%s %s failed", request.method, request.url.path)
                return self.page(
                    request,
                    "message.html",
                    http_status=500,
                    nav=None,
                    title="Something went wrong",
                    message="The page could not be made; the server log has the details.",
                )

        return endpoint

    # -- routes --------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = request.query_params.get("next", "")
        return self.page(
            request,
            "login.html",
            nav=None,
            wrong=False,
            next=target
            if target.startswith("/ui") or target.startswith(request.scope.get("root_path", "") + "/ui")
            else "",
        )

    async def login(self, request: Request) -> Response:
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))  # a urlencoded form of three fields
        self.check_form(request, form)
        token, target = form.get("token", [""])[0], form.get("next", [""])[0] or self.base(request) + "/jobs"
        if not target.startswith("/") or target.startswith("//"):
            target = self.base(request) + "/jobs"
        wait = self.throttled(request)
        if wait is not None:
            resp = self.page(
                request,
                "message.html",
                http_status=429,
                nav=None,
                title="Too many attempts",
                message=f"Too many wrong tokens from this address; try again in {math.ceil(wait)} s.",
            )
            resp.headers["Retry-After"] = str(math.ceil(wait))
            return resp
        if not self.args.api_token or not hmac.compare_digest(token.encode(), self.args.api_token.encode()):
            self.failures.setdefault(request.client.host if request.client else "", []).append(time.monotonic())
            return self.page(request, "login.html", http_status=401, nav=None, wrong=True, next=target)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path=request.scope.get("root_path", "") or "/")
        return resp

    async def logout(self, request: Request) -> Response:
        self.check_form(request, parse_qs((await request.body())[:8192].decode("utf-8", "replace")))
        resp = RedirectResponse(f"{self.base(request)}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=request.scope.get("root_path", "") or "/", httponly=True, samesite="strict")
        return resp

    async def home(self, request: Request) -> Response:
        return RedirectResponse(self.base(request) + "/jobs", status_code=307)

    async def jobs(self, request: Request) -> Response:
        raw = request.query_params.get("offset", "0")
        offset = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else 0
        jobs, total = await asyncio.to_thread(self.catalog.list_jobs, limit=PAGE_SIZE, offset=offset)
        rows = [self._job_row(j) for j in jobs]
        refresh = 2 if any(JobStatus(j.status).active for j in jobs) else None
        return self.page(
            request,
            "jobs.html",
            nav="jobs",
            jobs=rows,
            total=total,
            refresh=refresh,
            next_offset=offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
        )

    def _job_row(self, job: Job) -> dict:
        """Progress in video seconds of the job's current stage (a scan's coarse pass, then its windows): each
        stage has a total fixed when it starts, and its own rate and ETA."""
        stage = job.progress or {}
        done, total = float(stage.get("video_s_done") or 0.0), float(stage.get("video_s_total") or 0.0)
        rate = eta = None
        if JobStatus(job.status).active and stage.get("stage_started") and done:
            rate = done / max(time.time() - float(stage["stage_started"]), 1e-3)
            eta = (total - done) / rate if total > done else 0.0
        return {
            "id": job.id,
            "name": self.api.runner.name_of(job),
            "status": job.status,
            "stage": stage.get("stage"),
            "video_s_done": done,
            "video_s_total": total,
            "frames_done": job.frames_done or 0,
            "percent": round(100 * done / total) if total else (100 if job.status == JobStatus.SUCCEEDED else 0),
            "rate": round(rate, 1) if rate is not None else None,
            "eta": eta,
            "created": job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else "",
        }

    async def job(self, request: Request) -> Response:
        from serve_app.runner import job_status

        job = await asyncio.to_thread(self.api.runner.load, request.path_params["job_id"])
        if job is None:
            raise ApiError(404, f"no job {request.path_params['job_id']!r}")
        root = request.scope.get("root_path", "").rstrip("/")
        status = job_status(job, self.api.runner.name_of(job), root)
        context = await asyncio.to_thread(self._result_context, job.result_id, request) if job.result_id else {}
        return self.page(
            request,
            "job.html",
            nav="jobs",
            status=status,
            refresh=2 if JobStatus(job.status).active else None,
            json_url=f"{root}/jobs/{job.id}/result",
            **context,
        )

    def _result_context(self, result_id: int, request: Request) -> dict:
        result, video_id = self.catalog.result(result_id)
        base = self.base(request)
        return {
            "result": result,
            "timeline": Timeline(result.duration_s),
            "scores": [(f.timestamp_s, f.best_score()) for f in result.frame_data],
            "frames": [segment_frames(result, seg) for seg in result.segments],
            "frame_url": lambda n: f"{base}/videos/{video_id}/frames/{n}.jpg",
        }

    async def video(self, request: Request) -> Response:
        video_id = _int(request.path_params["video_id"])

        found = await asyncio.to_thread(self.catalog.scanned, video_id)
        if found is None:
            raise ApiError(404, f"no video {video_id}")
        path, result_id = found.path, found.result_id
        context = await asyncio.to_thread(self._result_context, result_id, request) if result_id else {}
        player = self._player(video_id, path, result_id) if result_id else None
        return self.page(
            request,
            "video.html",
            nav="library",
            name=relative_name(path, self.args.media_roots),
            json_url=None,
            player=player,
            refresh=3 if player and player["state"] == "drawing" else None,
            **context,
        )

    def _annotated(self, result_id: int) -> Path:
        return self.cache / f"result-{result_id}.mp4"

    def _player(self, video_id: int, path: str, result_id: int) -> dict:
        """The video with its boxes on every frame: drawn once per result (``annotate_video``) in the background."""
        out = self._annotated(result_id)
        url = f"/videos/{video_id}/annotated.mp4"
        if out.is_file():
            return {"state": "ready", "url": url}
        job = self.drawing.get(result_id)
        if job is None:
            self.drawing[result_id] = job = self.draw_pool.submit(self._draw, path, result_id)
        if job.done() and job.exception() is not None:
            return {"state": "failed", "error": str(job.exception()).splitlines()[0][:300]}
        return {"state": "drawing"} if not job.done() else {"state": "ready", "url": url}

    def _draw(self, path: str, result_id: int) -> Path:
        result, _ = self.catalog.result(result_id)
        self.cache.mkdir(parents=True, exist_ok=True)
        return annotate_video(path, result, self._annotated(result_id))

    async def annotated_video(self, request: Request) -> Response:
        video_id = _int(request.path_params["video_id"])

        found = await asyncio.to_thread(self.catalog.scanned, video_id)
        if found is None or found.result_id is None:
            raise ApiError(404, f"no scanned video {video_id}")
        out = self._annotated(found.result_id)
        if not out.is_file():
            raise ApiError(404, f"the annotated video of video {video_id} is not drawn yet; its page draws it")
        return FileResponse(out, media_type="video/mp4")

    async def frame(self, request: Request) -> Response:
        """One frame of a scanned video with its detections drawn (JPEG)."""
        video_id, frame_no = _int(request.path_params["video_id"]), _int(request.path_params["frame_no"])

        def draw() -> bytes:
            found = self.catalog.scanned(video_id)
            if found is None or found.document is None:
                raise ApiError(404, f"no scanned video {video_id}")
            path, doc = found.path, VideoResult.from_json(found.document)
            frame = next((f for f in doc.frame_data if f.frame_no == frame_no), None)
            if frame is None:
                raise ApiError(404, f"frame {frame_no} has no detections in video {video_id}")
            return jpeg(thumbnail(frame_at(path, frame.timestamp_s), frame.detections, max_width=THUMB_WIDTH))

        data = await asyncio.to_thread(draw)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def scan(self, request: Request) -> Response:
        """The library's "Scan" button: a job for one unscanned file at the server's defaults, then its page."""
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        self.check_form(request, form)
        job, _ = await self.api.admit(self.api._validate({"filename": form.get("filename", [""])[0]}))
        return RedirectResponse(f"{self.base(request)}/jobs/{job.id}", status_code=303)

    async def library(self, request: Request) -> Response:
        def rows():
            known = self.catalog.library()
            out = [
                self._library_row(str(path), known.pop(str(path), None))
                for root in self.args.media_roots
                for path in list_videos(root)
            ]
            return out + [self._library_row(p, v) for p, v in sorted(known.items())]  # scanned, outside today's roots

        videos = await asyncio.to_thread(rows)
        return self.page(
            request,
            "library.html",
            nav="library",
            videos=videos,
            with_clocks=sum(v["found"] == "yes" for v in videos),
            without=sum(v["found"] == "no" for v in videos),
            unscanned=sum(v["found"] == "unscanned" for v in videos),
        )

    def _library_row(self, path: str, video: Scanned | None) -> dict:
        doc = video.document if video is not None else None
        return {
            "name": relative_name(path, self.args.media_roots),
            "video_id": video.video_id if video else None,
            "duration_s": video.duration_s if video else None,
            "segments": len(doc["segments"]) if doc else None,
            "clock_frames": doc.get("clock_frames") if doc else None,
            "found": "unscanned" if doc is None else ("yes" if doc["segments"] else "no"),
        }

    async def remix(self, request: Request) -> Response:
        """One remix (``/ui/remix/{id}``; ``/ui/remix``: the latest), with the list of every remix above it."""
        base = self.base(request)
        wanted = request.path_params.get("remix_id")

        def load():
            listed = [
                {
                    "id": r.id,
                    "name": Path(r.path).name,
                    "label": r.label,
                    "duration_s": r.duration_s,
                    "order": (r.document or {}).get("order"),
                    "created": r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                }
                for r in self.catalog.remixes(REMIXES_LISTED)
            ]
            remix = self.catalog.remix(_int(str(wanted)) if wanted is not None else None)
            if remix is None:
                if wanted is not None:
                    raise ApiError(404, f"no remix {wanted}")
                return listed, None
            return listed, (remix.id, remix.document, self.catalog.video_ids(remix.document["sources"]))

        listed, found = await asyncio.to_thread(load)
        if found is None:
            return self.page(request, "remix.html", nav="remix", remix=None, remixes=listed)
        remix_id, doc, ids = found
        view = remix_view(
            doc,
            video_url=f"{base}/remix/{remix_id}.mp4",
            thumb_url=lambda sn: f"{base}/remix/{remix_id}/snippets/{quote(sn['name'])}.jpg",
            source_url=lambda p: f"{base}/videos/{ids[p]}" if p in ids else None,
        )
        return self.page(request, "remix.html", nav="remix", remix={**view, "id": remix_id}, remixes=listed)

    async def remix_file(self, request: Request) -> Response:
        path = await asyncio.to_thread(self._remix_path, _int(request.path_params["remix_id"]))
        return FileResponse(path, media_type="video/mp4")

    async def snippet_thumb(self, request: Request) -> Response:
        remix_id, name = _int(request.path_params["remix_id"]), request.path_params["name"]

        def draw() -> bytes:
            remix = self.catalog.remix(remix_id)
            snippet = next((sn for sn in remix.document["snippets"] if sn["name"] == name), None) if remix else None
            if snippet is None or not Path(snippet["path"]).is_file():
                raise ApiError(404, f"no snippet {name!r} in remix {remix_id}")
            return jpeg(frame_at(snippet["path"], (snippet["end_s"] - snippet["start_s"]) / 2), max_width=320)

        return Response(await asyncio.to_thread(draw), media_type="image/jpeg")

    def _remix_path(self, remix_id: int) -> str:
        remix = self.catalog.remix(remix_id)
        if remix is None or not Path(remix.path).is_file():
            raise ApiError(404, f"no remix file {remix_id}")
        return remix.path

    def routes(self) -> list[tuple[str, object, list[str]]]:
        g = self.guarded
        return [
            ("/ui", g(self.home), ["GET"]),
            ("/ui/login", g(self.login_form, open_route=True), ["GET"]),
            ("/ui/login", g(self.login, open_route=True), ["POST"]),
            ("/ui/logout", g(self.logout, open_route=True), ["POST"]),
            ("/ui/library/scan", g(self.scan), ["POST"]),
            ("/ui/jobs", g(self.jobs), ["GET"]),
            ("/ui/jobs/{job_id}", g(self.job), ["GET"]),
            ("/ui/videos/{video_id}", g(self.video), ["GET"]),
            ("/ui/videos/{video_id}/frames/{frame_no}.jpg", g(self.frame), ["GET"]),
            ("/ui/videos/{video_id}/annotated.mp4", g(self.annotated_video), ["GET"]),
            ("/ui/library", g(self.library), ["GET"]),
            ("/ui/remix", g(self.remix), ["GET"]),
            ("/ui/remix/{remix_id}.mp4", g(self.remix_file), ["GET"]),
            ("/ui/remix/{remix_id:int}", g(self.remix), ["GET"]),
            ("/ui/remix/{remix_id}/snippets/{name}.jpg", g(self.snippet_thumb), ["GET"]),
        ]


def render_docs(request: Request, spec: dict, defaults: dict | None = None) -> HTMLResponse:
    """/docs: the routes, and the request body's fields with their types and this server's defaults."""
    root = request.scope.get("root_path", "").rstrip("/")
    body = spec["components"]["schemas"]["InferenceRequest"]
    fields = [
        {
            "name": name,
            "required": name in body.get("required", []),
            "type": _schema_type(prop),
            "default": (defaults or {}).get(name, prop.get("default")),
            "notes": prop.get("description", ""),
        }
        for name, prop in body["properties"].items()
    ]
    return HTMLResponse(
        render(
            "docs.html",
            ui=root + "/ui",
            docs_url=root + "/docs",
            nav=None,
            spec=spec,
            fields=fields,
            openapi_url=root + "/openapi.json",
        )
    )


def _schema_type(prop: dict) -> str:
    """A JSON schema as a person reads it: "number (0, or 0.01 to 1000)", "array of full | zoomout | tiles"."""
    if "const" in prop:
        return repr(prop["const"])
    if "enum" in prop:
        return " | ".join(map(str, prop["enum"]))
    if "anyOf" in prop:
        kinds = [_schema_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds)) + (
            " or null" if any(p.get("type") == "null" for p in prop["anyOf"]) else ""
        )
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_schema_type(prop.get('items', {}))}"
    low, high = prop.get("minimum"), prop.get("maximum")
    return f"{kind} ({low} to {high})" if low is not None and high is not None else str(kind)


def _int(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:  # '²'.isdigit() is true; int('²') fails
        raise ApiError(404, f"not an id: {raw[:20]!r}")
    return int(raw)
