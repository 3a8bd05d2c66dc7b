"""Postback safety and delivery, against real sockets on loopback: the URL policy (SSRF forms), one
parse and one resolution per attempt, a total deadline, and a bounded read of the receiver's answer."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import pytest

from clockwork.store.postback import (
    DELIVERY_HEADER,
    RESPONSE_READ_LIMIT,
    HostPolicy,
    PostbackURLError,
    RetryPolicy,
    post_once,
)
from clockwork.testing import Receiver

# Every form below reaches loopback, link-local metadata or "this host": the default policy refuses each.
SMUGGLED = [
    "http://[::ffff:127.0.0.1]:8790/x",
    "http://[::ffff:7f00:1]:8790/x",
    "http://[::ffff:169.254.169.254]/latest",
    "http://[::ffff:0.0.0.0]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo carrying 127.0.0.1 (obfuscated as ~ip)
]


@pytest.mark.parametrize("url", SMUGGLED)
def test_ipv6_forms_of_denied_ipv4_addresses_are_refused(url):
    with pytest.raises(PostbackURLError, match="refused"):
        HostPolicy().check(url)


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://127.0.0.1:8790\\@hooks.example.com/x", "backslash"),
        ("http://user:pw@hooks.example.com/x", "credentials"),
        ("http://127.0.0.1:8790@hooks.example.com/x", "credentials"),
        ("http://a..b/", "label"),
        (f"http://{'a' * 64}.example.com/", "label"),
        ("http://hooks example.com/", "spaces"),
        ("gopher://hooks.example.com/", "scheme"),
        ("http:///x", "no host|invalid"),
        ("http://hooks.example.com:99999/", "invalid"),
    ],
)
def test_ambiguous_or_malformed_urls_are_refused_before_any_lookup(url, words):
    def resolve(host, port):
        raise AssertionError("an ambiguous URL must be refused before its host is looked up")

    with pytest.raises(PostbackURLError, match=words):
        HostPolicy(allow=("0.0.0.0/0",)).check(url, resolve)


def test_the_connection_goes_to_the_checked_address_with_the_names_host_header():
    """DNS rebinding: a resolver that answers differently on its second call is asked once; the POST
    goes to the first answer (loopback here, allowlisted) and carries the URL's host name."""
    answers = iter([["127.0.0.1"], ["10.255.255.1"]])
    calls = []

    def resolve(host, port):
        calls.append(host)
        return next(answers)

    with Receiver() as rx:
        policy = HostPolicy(allow=("127.0.0.1/32",))
        target = policy.check(f"http://rebind.test:{rx.port}/hook", resolve)
        attempt = asyncio.run(post_once(target, b'{"a":1}', secret=None, timeout_s=5, job_id="j1", delivery_id="j1.1"))
        [post] = rx.wait_for(1, timeout=5)
    assert attempt.ok and calls == ["rebind.test"]
    assert post["headers"]["Host"] == f"rebind.test:{rx.port}" and post["headers"][DELIVERY_HEADER] == "j1.1"


class RawServer:
    """A TCP server on loopback that answers every connection with ``script(conn)``."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.closed_at: float | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        conn.recv(65536)
        try:
            self.script(self, conn)
        except OSError:
            self.closed_at = time.monotonic()
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_total_deadline():
    def trickle(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(60):  # one header byte a second: each read is quick, the whole never ends
            conn.sendall(b"X")
            time.sleep(1)

    server = RawServer(trickle)
    target = HostPolicy(allow=("127.0.0.1/32",)).check(f"http://127.0.0.1:{server.port}/")
    t = time.monotonic()
    attempt = asyncio.run(post_once(target, b"{}", secret=None, timeout_s=2))
    server.close()
    assert not attempt.ok and "within 2 s" in attempt.error
    assert time.monotonic() - t < 4


def test_a_huge_answer_is_not_read_whole():
    def flood(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000000\r\nContent-Type: text/plain\r\n\r\n")
        chunk = b"x" * 65536
        while server.sent < 3_000_000_000:
            conn.sendall(chunk)
            server.sent += len(chunk)

    server = RawServer(flood)
    target = HostPolicy(allow=("127.0.0.1/32",)).check(f"http://127.0.0.1:{server.port}/")
    attempt = asyncio.run(post_once(target, b"{}", secret=None, timeout_s=10))
    deadline = time.monotonic() + 5
    while server.closed_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    server.close()
    assert attempt.ok and attempt.status == 200
    # the client read RESPONSE_READ_LIMIT bytes and hung up: the sender hit a closed socket early
    assert server.closed_at is not None and server.sent < 64 * 1024 * 1024, server.sent
    assert RESPONSE_READ_LIMIT <= 8192


def test_retry_schedule_spans_hours_with_full_jitter():
    retry = RetryPolicy()
    caps = [min(retry.max_delay_s, retry.base_delay_s * 2 ** (n - 1)) for n in range(1, retry.max_attempts)]
    assert sum(caps) >= 6 * 3600  # the longest a delivery waits: hours, as webhook providers give
    rng = random.Random(7)
    delays = [retry.delay(4, rng) for _ in range(500)]
    cap = retry.base_delay_s * 8
    assert 0 <= min(delays) < 0.1 * cap and max(delays) <= cap  # full jitter: anywhere in [0, cap]


def _own_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (iproute2's view of its interfaces)."""
    import shutil
    import subprocess

    if not shutil.which("ip"):
        return []
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if not line.split()[3].startswith("127.")]


def test_the_machines_own_addresses_are_refused_unless_allowed():
    own = _own_addresses()
    if not own:
        pytest.skip("this machine has no non-loopback address")
    with pytest.raises(PostbackURLError, match="an address of this machine"):
        HostPolicy().check(f"http://{own[0]}:8265/api/jobs/")
    assert HostPolicy(allow=(f"{own[0]}/32",)).check(f"http://{own[0]}:9000/hook").addresses == (own[0],)
    assert HostPolicy().check(
        "http://hooks.example.com/x", resolve=lambda host, port: ["93.184.216.34"]
    )  # elsewhere: fine
