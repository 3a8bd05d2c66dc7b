"""Test helpers shipped with the package (as Starlette ships its TestClient): a real postback receiver on
loopback that records every POST (headers and raw body), and an ASGI app served on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Context manager. ``port`` may be fixed so a receiver can go down and come back on it."""

    def __init__(self, port: int | None = None, status: int = 200):
        self.port = port or free_port()
        self.status = status
        self.posts: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.posts.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "json": json.loads(body)}
                )
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_for(self, n: int = 1, timeout: float = 120.0, job_id: str | None = None) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [p for p in self.posts if job_id is None or p["json"].get("job_id") == job_id]
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise TimeoutError(
            f"expected {n} postback(s) for {job_id or 'any job'} within {timeout} s, got {len(self.posts)}"
        )


class AppServer:
    """Context manager: an ASGI app served by uvicorn on a free loopback port in a thread of this process
    (real HTTP for clients and browsers). ``url`` is its base URL; ready once ``/healthz`` answers."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> AppServer:
        import urllib.error
        import urllib.request

        self._thread.start()
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answered
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def wait_for_job(get_status, job_id: str, pred, timeout: float = 120.0, interval: float = 0.1) -> dict:
    """Poll ``get_status(job_id)`` (the JSON of GET /jobs/{id}) until ``pred(status)`` holds."""
    deadline = time.time() + timeout
    status: dict = {}
    while time.time() < deadline:
        status = get_status(job_id)
        if pred(status):
            return status
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} never reached the condition; last status {status}")
