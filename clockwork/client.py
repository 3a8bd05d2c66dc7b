"""A small Python client for the HTTP API: ``Client(base_url, token).submit(...)``, ``wait``, ``result``, ``jobs``.

    from clockwork.client import Client

    api = Client("http://127.0.0.1:8000", token=None)
    job = api.submit("clock_moving_360p25.mp4", sample_fps=2)
    status = api.wait(job["job_id"])            # polls GET /jobs/{id} until the job ends
    result = api.result(job["job_id"])          # the result document

Errors come back as :class:`ApiError` with the server's status and message.
"""

from __future__ import annotations

import time
from typing import Any

import requests

FINAL = ("succeeded", "failed", "cancelled")


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, body or {}


class ApiUnreachable(ApiError):
    """Nothing answered at the base URL (no server there, or a wrong port)."""

    def __init__(self, base_url: str, cause: Exception):
        reason = (
            type(cause.args[0]).__name__
            if cause.args and isinstance(cause.args[0], Exception)
            else type(cause).__name__
        )
        super().__init__(0, f"cannot reach the API at {base_url} ({reason})")
        self.base_url = base_url


class Client:
    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            resp = self.session.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiUnreachable(self.base_url, exc) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else resp.text[:300]
            raise ApiError(resp.status_code, message or resp.reason, body if isinstance(body, dict) else None)
        return body

    def submit(self, filename: str, *, idempotency_key: str | None = None, **fields) -> dict:
        """POST /video-inference. ``fields``: postback_url, labels, min_score, sample_fps, scan, views, read_time."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"filename": filename, **{k: v for k, v in fields.items() if v is not None}}
        return self._call("POST", "/video-inference", json=body, headers=headers)

    def status(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def wait(self, job_id: str, *, timeout_s: float = 3600.0, interval_s: float = 1.0, on_status=None) -> dict:
        """Poll until the job ends; ``on_status(status)`` sees each poll (progress bars)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if on_status is not None:
                on_status(status)
            if status["status"] in FINAL:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {status['status']} after {timeout_s:g} s")
            time.sleep(interval_s)

    def result(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}/result")

    def jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        params = {"limit": limit, "offset": offset, **({"status": status} if status else {})}
        return self._call("GET", "/jobs", params=params)

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/jobs/{job_id}")

    def redeliver(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/postback")
