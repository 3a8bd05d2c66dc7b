"""Posting results back: URL safety, HMAC-SHA256 signatures, and delivery with backoff.

Signature header (when a secret is configured)::

    X-Clockwork-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Receivers recompute the HMAC over the timestamp and the raw body, compare in constant time, and
reject old timestamps (``verify_signature`` does all three).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

SIGNATURE_HEADER = "X-Clockwork-Signature"

# Link-local (the cloud metadata address 169.254.169.254 among them), loopback, "this network",
# and the metadata addresses of clouds that do not use link-local.
DEFAULT_DENY = (
    "169.254.0.0/16", "fe80::/10", "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",
    "100.100.100.200/32", "fd00:ec2::254/128", "metadata.google.internal", "metadata",
)


class PostbackURLError(ValueError):
    """The postback URL is malformed or its host is not allowed."""


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time() if timestamp is None else timestamp)
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(secret: str | bytes, body: bytes, header: str, *, tolerance_s: float = 300, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within ``tolerance_s``."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True)
class HostPolicy:
    """``allow``: if not empty, the host must match it. ``deny``: refused unless also in ``allow``.
    Entries are CIDRs (``10.0.0.0/8``) or host names (``hooks.example.com``)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = DEFAULT_DENY

    @staticmethod
    def _matches(host: str, addrs: list[ipaddress._BaseAddress], rules: Iterable[str]) -> bool:
        for rule in rules:
            try:
                net = ipaddress.ip_network(rule, strict=False)
            except ValueError:
                if host.lower().rstrip(".") == rule.lower():
                    return True
                continue
            if any(a.version == net.version and a in net for a in addrs):
                return True
        return False

    def check(self, url: str, resolve: Callable[[str], list[str]] | None = None) -> None:
        """Raise :class:`PostbackURLError` unless ``url`` is http(s) to an allowed host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise PostbackURLError(f"invalid postback_url {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise PostbackURLError(f"invalid postback_url scheme ({parts.scheme!r}). Supported values are 'http' and 'https'.")
        host = parts.hostname
        if not host:
            raise PostbackURLError(f"invalid postback_url {url!r}: no host")
        try:
            addrs = [ipaddress.ip_address(a) for a in (resolve or _resolve)(host, port)]
        except OSError as exc:
            raise PostbackURLError(f"postback_url host {host!r} does not resolve: {exc}") from None
        if self.allow and not self._matches(host, addrs, self.allow):
            raise PostbackURLError(f"postback_url host {host!r} is not in the allowlist ({', '.join(self.allow)})")
        if self._matches(host, addrs, self.deny) and not self._matches(host, addrs, self.allow):
            raise PostbackURLError(
                f"postback_url host {host!r} ({', '.join(map(str, addrs))}) is refused: link-local, loopback and "
                "cloud-metadata addresses are denied unless allowlisted")


def _resolve(host: str, port: int | None) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0].split("%", 1)[0] for info in infos})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter before attempt ``attempt + 1`` (attempt counts from 1)."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return (rng or random).uniform(cap / 2, cap)


@dataclass
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    seconds: float


def post_once(url: str, body: bytes, *, secret: str | None, timeout_s: float, job_id: str | None = None) -> Attempt:
    headers = {"Content-Type": "application/json", "User-Agent": "clockwork-postback/1"}
    if job_id:
        headers["X-Clockwork-Job"] = job_id
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    t = time.perf_counter()
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - t)
    ok = 200 <= resp.status_code < 300
    return Attempt(ok, resp.status_code, None if ok else f"HTTP {resp.status_code}", time.perf_counter() - t)


@dataclass(frozen=True)
class DeliveryState:
    """Where a delivery stands after an attempt: what the catalog records."""

    attempts: int
    delivered: bool
    gave_up: bool
    last_error: str | None


async def deliver(url: str, body: bytes, *, policy: HostPolicy, retry: RetryPolicy, secret: str | None,
                  job_id: str | None = None, attempts_so_far: int = 0,
                  record: Callable[[DeliveryState, Attempt | None], Awaitable[None]]) -> DeliveryState:
    """POST ``body`` to ``url`` until a 2xx, the attempts run out, or the URL is refused.

    The URL is checked again before every attempt (DNS may have changed since the request was taken).
    ``record`` is awaited after each attempt with the new state, so a crash loses at most the attempt
    in flight; ``attempts_so_far`` resumes the count of an earlier runner.
    """
    attempts = attempts_so_far
    while attempts < retry.max_attempts:
        try:
            await asyncio.to_thread(policy.check, url)
        except PostbackURLError as exc:
            state = DeliveryState(attempts, False, True, str(exc))
            await record(state, None)
            return state
        attempt = await asyncio.to_thread(post_once, url, body, secret=secret, timeout_s=retry.timeout_s, job_id=job_id)
        attempts += 1
        state = DeliveryState(attempts, attempt.ok, not attempt.ok and attempts >= retry.max_attempts,
                              None if attempt.ok else attempt.error)
        await record(state, attempt)
        if attempt.ok or state.gave_up:
            return state
        await asyncio.sleep(retry.delay(attempts))
    return DeliveryState(attempts, False, True, "no attempts left")
