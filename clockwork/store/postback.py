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
import re
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

SIGNATURE_HEADER = "X-Clockwork-Signature"

# Link-local (the cloud metadata address 169.254.169.254 among them), loopback, "this network",
# and the metadata addresses of clouds that do not use link-local.
DEFAULT_DENY = (
    "169.254.0.0/16",
    "fe80::/10",
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
    "100.100.100.200/32",
    "fd00:ec2::254/128",
    "metadata.google.internal",
    "metadata",
)


class PostbackURLError(ValueError):
    """The postback URL is malformed or its host is not allowed."""


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time() if timestamp is None else timestamp)
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(
    secret: str | bytes, body: bytes, header: str, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
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


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _ipv4_behind(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) or Teredo."""
    if addr.version == 4:
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    packed = addr.packed
    if packed[:12] == bytes(12) or addr in _NAT64:
        return ipaddress.IPv4Address(packed[12:])
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Target:
    """A checked postback URL: parsed once, with the addresses that were checked. Delivery connects to
    these addresses only (no second resolution), sending the URL's host name as Host and SNI."""

    url: yarl.URL
    addresses: tuple[str, ...]


def _is_this_machine(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``addr`` belongs to one of this machine's interfaces: only such an address can be bound to."""
    if addr.is_unspecified:
        return True  # 0.0.0.0 and :: reach this machine
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(addr), 0))
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class HostPolicy:
    """``allow``: if not empty, the host must match it. ``deny``: refused unless also in ``allow``.
    Entries are CIDRs (``10.0.0.0/8``) or host names (``hooks.example.com``). An IPv6 address that
    carries an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) is checked as both."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = DEFAULT_DENY
    resolve_timeout_s: float = 5.0

    @staticmethod
    def _matches(host: str, addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address], rules: Iterable[str]) -> bool:
        forms = [a for addr in addrs for a in (addr, _ipv4_behind(addr)) if a is not None]
        for rule in rules:
            try:
                net = ipaddress.ip_network(rule, strict=False)
            except ValueError:
                if host.lower().rstrip(".") == rule.lower().rstrip("."):
                    return True
                continue
            if any(a.version == net.version and a in net for a in forms):
                return True
        return False

    @staticmethod
    def parse(url: str) -> yarl.URL:
        """Parse ``url`` once, refusing anything two parsers could read differently."""
        if (
            not isinstance(url, str)
            or any(c in url for c in "\\ \t\r\n")
            or any(ord(c) < 32 or ord(c) == 127 for c in url)
        ):
            raise PostbackURLError("invalid postback_url: backslashes, spaces and control characters are not allowed")
        try:
            parsed = yarl.URL(url)
            parsed.port  # noqa: B018 - raises on a bad port
        except (ValueError, UnicodeError) as exc:
            raise PostbackURLError(f"invalid postback_url: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise PostbackURLError(
                f"invalid postback_url scheme ({parsed.scheme!r}). Supported values are 'http' and 'https'."
            )
        if parsed.raw_user is not None or parsed.raw_password is not None or "@" in (parsed.raw_authority or ""):
            raise PostbackURLError("invalid postback_url: credentials (user@host) are not allowed in it")
        host = parsed.raw_host
        if not host:
            raise PostbackURLError("invalid postback_url: no host")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            name = host.rstrip(".").lower()
            if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
                raise PostbackURLError(
                    "invalid postback_url host: each dot-separated label must be 1 to 63 letters, "
                    "digits or hyphens, 253 characters in all"
                ) from None
        return parsed

    def check(self, url: str, resolve: Callable[[str, int | None], list[str]] | None = None) -> Target:
        """Parse, resolve once and check; raise :class:`PostbackURLError` unless every address is allowed."""
        parsed = self.parse(url)
        host = parsed.raw_host
        try:
            addrs = [ipaddress.ip_address(a) for a in (resolve or _resolve)(host, parsed.port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise PostbackURLError(f"postback_url host {host!r} does not resolve: {exc}") from None
        if not addrs:
            raise PostbackURLError(f"postback_url host {host!r} does not resolve")
        if self.allow and not self._matches(host, addrs, self.allow):
            raise PostbackURLError(f"postback_url host {host!r} is not in the allowlist ({', '.join(self.allow)})")
        if self._matches(host, addrs, self.deny) and not self._matches(host, addrs, self.allow):
            raise PostbackURLError(
                f"postback_url host {host!r} ({', '.join(map(str, addrs))}) is refused: link-local, loopback and "
                "cloud-metadata addresses are denied unless allowlisted"
            )
        own = [a for a in addrs if _is_this_machine(a)]
        if own and not self._matches(host, own, self.allow):
            raise PostbackURLError(
                f"postback_url host {host!r} ({', '.join(map(str, own))}) is refused: it is an address "
                "of this machine (its services are not for postbacks) unless allowlisted"
            )
        return Target(parsed, tuple(str(a) for a in addrs))

    async def acheck(self, url: str, resolve: Callable[[str, int | None], list[str]] | None = None) -> Target:
        """:meth:`check` off the event loop, on the postback pool (never the default one), within the
        resolve timeout."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(_RESOLVER_POOL, self.check, url, resolve), self.resolve_timeout_s
            )
        except TimeoutError:
            raise PostbackURLError(f"postback_url host did not resolve within {self.resolve_timeout_s:g} s") from None


# Name resolution for postbacks has its own small pool: a slow resolver never holds the threads that
# catalog calls and health checks use.
_RESOLVER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="postback-resolve")


def _resolve(host: str, port: int | None) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0].split("%", 1)[0] for info in infos})


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again: exponential backoff with full jitter, capped, over ``max_attempts``.

    Before attempt n+1 the wait is uniform in [0, min(max_delay_s, base_delay_s * 2**(n-1))]: with the
    defaults, 16 attempts over up to 6.4 hours (3.2 on average), as webhook providers do, so a receiver
    that is down for an afternoon still gets its result."""

    max_attempts: int = 16
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, cap] before attempt ``attempt + 1`` (attempt counts from 1)."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, cap)


@dataclass
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    seconds: float


DELIVERY_HEADER = "X-Clockwork-Delivery"
JOB_HEADER = "X-Clockwork-Job"
RESPONSE_READ_LIMIT = 4096  # bytes of a receiver's answer that are read; the rest is never read


class _PinnedResolver(AbstractResolver):
    """Answers with the addresses the policy checked, so the connection goes where the check looked."""

    def __init__(self, addresses: tuple[str, ...]):
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def post_once(
    target: Target,
    body: bytes,
    *,
    secret: str | None,
    timeout_s: float,
    job_id: str | None = None,
    delivery_id: str | None = None,
) -> Attempt:
    """One POST to a checked target under a total deadline (a receiver that trickles bytes is cut off
    at ``timeout_s``), reading at most :data:`RESPONSE_READ_LIMIT` bytes of the answer."""
    headers = {"Content-Type": "application/json", "User-Agent": "clockwork-postback/1"}
    if job_id:
        headers[JOB_HEADER] = job_id
    if delivery_id:
        headers[DELIVERY_HEADER] = delivery_id
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    t = time.perf_counter()
    connector = aiohttp.TCPConnector(resolver=_PinnedResolver(target.addresses), force_close=True, use_dns_cache=False)
    try:
        async with asyncio.timeout(timeout_s):
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as session:
                async with session.post(target.url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.content.read(RESPONSE_READ_LIMIT)
                    status = resp.status
    except TimeoutError:
        return Attempt(False, None, f"no complete answer within {timeout_s:g} s", time.perf_counter() - t)
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - t)
    ok = 200 <= status < 300
    return Attempt(ok, status, None if ok else f"HTTP {status}", time.perf_counter() - t)


@dataclass(frozen=True)
class DeliveryState:
    """Where a delivery stands after an attempt: what the catalog records. ``retry_in_s`` is set while
    attempts remain after a failure: the next one is due that many seconds later."""

    attempts: int
    delivered: bool
    gave_up: bool
    last_error: str | None
    retry_in_s: float | None = None


async def deliver_once(
    url: str,
    body: bytes,
    *,
    policy: HostPolicy,
    retry: RetryPolicy,
    secret: str | None,
    job_id: str | None = None,
    delivery_id: str | None = None,
    attempts_so_far: int = 0,
) -> tuple[DeliveryState, Attempt | None]:
    """One attempt of a delivery: check the URL again (DNS may have changed since the request was
    taken), POST, and say what is next. The caller persists the state and schedules the next attempt,
    so a delivery survives restarts and its schedule can span hours without a task waiting on it."""
    try:
        target = await policy.acheck(url)
    except PostbackURLError as exc:
        return DeliveryState(attempts_so_far, False, True, str(exc)), None
    attempt = await post_once(
        target, body, secret=secret, timeout_s=retry.timeout_s, job_id=job_id, delivery_id=delivery_id
    )
    attempts = attempts_so_far + 1
    gave_up = not attempt.ok and attempts >= retry.max_attempts
    retry_in = None if attempt.ok or gave_up else retry.delay(attempts)
    return DeliveryState(attempts, attempt.ok, gave_up, None if attempt.ok else attempt.error, retry_in), attempt
