"""The HTTP/1.1 transport's bounds: head size and field count (431), URL length (414),
an oversize Content-Length answered at the headers, header and body deadlines (408),
the connection cap, pipelining and write back-pressure. Every refusal closes its
connection and the server serves on."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from http_helpers import assert_serves
from live_server import serving_http
from triton_core.frontends.http.server import HttpConnection, HttpLimits

HEALTH = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


def _connect(addr: str) -> socket.socket:
    host, port = addr.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer_then_close(sock: socket.socket) -> tuple[int, bytes]:
    """The one response the server sends before it closes the connection (waits for the close)."""
    buf = b""
    try:
        while chunk := sock.recv(65536):
            buf += chunk
    except ConnectionResetError:
        pass
    assert buf, "the server closed without an answer"
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), body


@pytest.fixture(scope="module")
def quick(http_server):
    """A front end with short deadlines and a small connection cap."""
    lim = HttpLimits(header_timeout=0.3, body_timeout=0.3, max_connections=4)
    with serving_http(http_server, limits=lim) as a:
        yield a


# --- head bounds ------------------------------------------------------------------------

def test_too_many_header_fields_get_431(addr):
    fields = b"".join(b"X-A: %d\r\n" % i for i in range(101))
    with _connect(addr) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        status, body = _answer_then_close(s)
    assert status == 431 and b"--http-max-headers" in body
    assert_serves(addr)


def test_a_head_larger_than_the_limit_gets_431_before_it_ends(addr):
    # one 70 KiB header, never ended: answered once the 64 KiB head limit is passed
    with _connect(addr) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * (70 << 10))
        status, body = _answer_then_close(s)
    assert status == 431 and b"--http-max-header-size" in body
    assert_serves(addr)


def test_a_long_url_gets_414(addr):
    with _connect(addr) as s:
        s.sendall(b"GET /v2/health/live?" + b"q" * (9 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = _answer_then_close(s)
    assert status == 414
    assert_serves(addr)


def test_repeated_headers_are_joined_in_linear_time(http_server):
    # 150k repeated fields (4.5 MB): joined one copy per field, this took over 10 s
    lim = HttpLimits(max_headers=200_000, max_header_size=8 << 20)
    with serving_http(http_server, limits=lim) as a, _connect(a) as s:
        fields = (b"X-A: " + b"v" * 24 + b"\r\n") * 150_000
        start = time.monotonic()
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - start < 5  # generous: catches only the quadratic join


def test_repeated_headers_join_with_commas():
    conn, app, _ = _connection()

    async def go():
        conn.data_received(b"GET /x HTTP/1.1\r\nA: 1\r\nB: x\r\na: 2\r\nA: 3\r\n\r\n")
        await _until(lambda: app.seen)

    asyncio.run(go())
    assert app.seen[0].headers[b"a"] == b"1,2,3" and app.seen[0].headers[b"b"] == b"x"


def test_one_huge_header_is_never_buffered_whole():
    conn, _, t = _connection()

    async def go():
        conn.data_received(b"GET /x HTTP/1.1\r\nX-Big: ")
        for _ in range(64):  # 1 MiB in 16 KiB pieces
            conn.data_received(b"v" * (16 << 10))
        await _until(lambda: t.closed)

    asyncio.run(go())
    assert conn.head_fed <= conn.limits.max_header_size  # stopped at the limit
    assert t.written.startswith(b"HTTP/1.1 431")


# --- Content-Length ------------------------------------------------------------------------

def test_an_oversize_content_length_is_answered_at_the_headers(addr):
    # 10^15 bytes announced, 2 sent: the answer comes now, not after a body that never comes
    with _connect(addr) as s:
        s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1000000000000000\r\n\r\n{}")
        status, body = _answer_then_close(s)
    assert status == 400 and b"--http-max-input-size" in body
    assert_serves(addr)


# --- deadlines -----------------------------------------------------------------------------

def test_a_head_that_does_not_arrive_in_time_gets_408(quick):
    with _connect(quick) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never ended
        status, body = _answer_then_close(s)  # waits for the server to close it
    assert status == 408 and b"headers" in body
    assert_serves(quick)


def test_a_silent_new_connection_is_closed_at_the_header_deadline(quick):
    with _connect(quick) as s:  # nothing sent: the first head is due from the connection's start
        status, _ = _answer_then_close(s)
    assert status == 408


def test_trickled_head_bytes_do_not_extend_the_deadline(quick):
    # each byte resets the idle timer, not the head's deadline
    with _connect(quick) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        s.settimeout(0.05)
        deadline = time.monotonic() + 10
        answer = b""
        while not answer:  # one header byte at a time until the server answers
            assert time.monotonic() < deadline, "a trickling head kept its connection"
            s.sendall(b"X")
            try:
                answer = s.recv(65536)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408")


def test_a_body_that_does_not_arrive_in_time_gets_408(quick):
    with _connect(quick) as s:
        s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        status, body = _answer_then_close(s)
    assert status == 408 and b"body" in body
    assert_serves(quick)


# --- the connection cap ---------------------------------------------------------------------

def test_slow_heads_cannot_lock_out_new_clients(quick):
    slow = [_connect(quick) for _ in range(4)]
    try:
        for s in slow:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # heads that never end
        for _ in range(3):  # each new client is served: a slow connection makes room
            with _connect(quick) as s:
                s.sendall(HEALTH)
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for s in slow:
            s.close()


def test_idle_keep_alive_connections_make_room(quick):
    idle = [_connect(quick) for _ in range(4)]
    try:
        for s in idle:
            s.sendall(HEALTH)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        with _connect(quick) as s:
            s.sendall(HEALTH)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        assert idle[0].recv(1) == b""  # the longest idle was closed
    finally:
        for s in idle:
            s.close()


def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503():
    lim = HttpLimits(max_connections=2)
    connections: set[HttpConnection] = set()
    app = _App()
    for _ in range(2):
        busy = HttpConnection(app, connections, lim)  # type: ignore[arg-type]
        busy.connection_made(_Transport())
        busy.queue.append(object())  # type: ignore[arg-type]  # a request waiting: busy
    new, t = HttpConnection(app, connections, lim), _Transport()  # type: ignore[arg-type]
    new.connection_made(t)
    assert t.written.startswith(b"HTTP/1.1 503") and t.closed
    assert len(connections) == 2 and not any(c.transport.closed for c in connections)  # type: ignore[union-attr]


# --- pipelining and back-pressure ---------------------------------------------------------------

def test_reading_pauses_while_queued_requests_hold_too_many_bytes():
    conn, app, t = _connection()
    big = b"x" * (600 << 10)
    post = b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(big) + big

    async def go():
        app.hold = asyncio.Event()
        conn.data_received(HEALTH)  # in progress until released
        await _until(lambda: app.seen)
        conn.data_received(post)
        assert not t.paused  # 600 KiB queued: under the bound
        conn.data_received(post)
        assert t.paused  # 1.2 MiB queued behind a request in progress
        app.hold.set()
        await _until(lambda: len(app.seen) == 3)
        await _until(lambda: not t.paused)

    asyncio.run(go())


def test_responses_wait_for_the_socket_to_drain():
    conn, app, t = _connection()

    async def go():
        conn.pause_writing()  # the client reads slowly
        conn.data_received(HEALTH + HEALTH)
        await _until(lambda: app.seen)
        for _ in range(20):
            await asyncio.sleep(0)  # the loop runs: the second request must still wait
        assert len(app.seen) == 1
        conn.resume_writing()
        await _until(lambda: len(app.seen) == 2)

    asyncio.run(go())


# --- in-process pieces -------------------------------------------------------------------------

class _App:
    max_input_size = 64 << 20

    def __init__(self) -> None:
        self.seen: list = []
        self.hold: asyncio.Event | None = None

    async def handle(self, req, path):
        self.seen.append(req)
        if self.hold is not None and len(self.seen) == 1:
            await self.hold.wait()
        return 200, [], b""


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts) -> None:
        self.written += b"".join(parts)

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name, default=None):
        return default


def _connection() -> tuple[HttpConnection, _App, _Transport]:
    app, t = _App(), _Transport()
    conn = HttpConnection(app, set())  # type: ignore[arg-type]
    conn.connection_made(t)
    return conn, app, t


async def _until(cond) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.001)


def test_the_flags_set_the_limits():
    from triton_core.cli import _http_limits, build_parser

    a = build_parser().parse_args([
        "--model-repository", "/m", "--http-max-header-size", "1000", "--http-max-headers", "7",
        "--http-max-url-size", "99", "--http-header-timeout", "5", "--http-body-timeout", "6",
        "--http-max-connections", "8"])
    assert _http_limits(a) == HttpLimits(max_header_size=1000, max_headers=7, max_url_size=99,
                                         header_timeout=5, body_timeout=6, max_connections=8)
    assert _http_limits(build_parser().parse_args([])) == HttpLimits()  # defaults agree
    with pytest.raises(SystemExit, match="--http-max-headers"):
        _http_limits(build_parser().parse_args(["--http-max-headers", "0"]))


def test_pipelined_small_requests_are_not_taken_for_a_large_head():
    # pieces of many small pipelined requests, each piece ending inside a head: no 431
    conn, app, t = _connection()
    req = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
    n = 3 * (conn.limits.max_header_size // len(req))
    stream = req * n

    async def go():
        split = 1
        conn.data_received(stream[:split])  # the first head has begun
        for i in range(split, len(stream), 100_000):  # each piece ends mid-head
            conn.data_received(stream[i:i + 100_000])
        await _until(lambda: len(app.seen) == n)

    asyncio.run(go())
    assert b" 431 " not in t.written
