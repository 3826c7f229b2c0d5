"""HTTP/1.1 transport for the front end: httptools parsing on an asyncio Protocol.

Measured against uvicorn (ASGI over httptools) and granian (embedded RSGI) on
perf_analyzer's infer path: a response here is one socket write (uvicorn makes
two) and no ASGI message dicts, which shows in latency at concurrency 1. The
ASGI entry point (HttpFrontEnd.__call__) stays for embedding in other servers.
"""

from __future__ import annotations

import asyncio
import collections
import select
import time
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from ...errors import TritonError
from .app import _Req, error_response
from .body import _too_large

if TYPE_CHECKING:
    from .app import HttpFrontEnd

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_MAX_PIPELINE = 32  # queued requests on one connection before reading pauses
IDLE_TIMEOUT_S = 75.0  # a connection with no request in flight and no bytes for this long closes


class _Message:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "error")

    def __init__(self) -> None:
        self.method = ""
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.keep_alive = True
        self.error: TritonError | None = None


class WaitingClients:
    """Whether any client connection has bytes the loop has not read yet: a request
    waiting behind the one being handled (one poll(0) over every connection)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: set[int] = set()

    def add(self, fd: int) -> None:
        self._poll.register(fd, select.POLLIN)
        self._fds.add(fd)

    def remove(self, fd: int) -> None:
        self._fds.discard(fd)
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass

    def __call__(self) -> bool:
        if not self._fds:
            return False  # no system call for a front end without connections
        try:
            return any(ev & select.POLLIN for _, ev in self._poll.poll(0))
        except OSError:
            return False


class HttpConnection(asyncio.Protocol):
    """One client connection; requests are answered in order (HTTP pipelining)."""

    def __init__(self, app: HttpFrontEnd, connections: set[HttpConnection],
                 waiting: WaitingClients | None = None) -> None:
        self.app = app
        self.connections = connections
        self.waiting = waiting
        self.fd = -1
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.msg: _Message | None = None
        self.size = 0
        self.queue: collections.deque[_Message] = collections.deque()
        self.worker: asyncio.Task | None = None
        self.paused = False
        self.closing = False
        self.last_active = time.monotonic()

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        sock = transport.get_extra_info("socket")
        if self.waiting is not None and sock is not None:
            self.fd = sock.fileno()
            self.waiting.add(self.fd)

    def close_if_idle(self, now: float) -> None:
        """Idle keep-alive connections must not hold descriptors forever."""
        if self.worker is None and not self.queue and now - self.last_active > IDLE_TIMEOUT_S:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.waiting is not None and self.fd >= 0:
            self.waiting.remove(self.fd)
        self.closing = True
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()  # cancels the request's await: a queued request is marked cancelled

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed HTTP request: {e}".encode())

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.msg = _Message()
        self.size = 0

    def on_url(self, url: bytes) -> None:
        assert self.msg is not None
        self.msg.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.msg is not None
        key = name.lower()
        h = self.msg.headers
        h[key] = h[key] + b"," + value if key in h else value

    def on_headers_complete(self) -> None:
        msg = self.msg
        assert msg is not None
        msg.method = self.parser.get_method().decode("ascii")
        msg.keep_alive = self.parser.should_keep_alive()
        cl = msg.headers.get(b"content-length")
        if cl is not None:
            try:
                length = int(cl)
            except ValueError:
                msg.error = TritonError.invalid_arg("invalid Content-Length header")
                return
            if length > self.app.max_input_size:
                msg.error = _too_large(self.app.max_input_size)
                return
        if msg.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        msg = self.msg
        assert msg is not None
        if msg.error is not None:
            return
        self.size += len(body)
        if self.size > self.app.max_input_size:
            msg.error = _too_large(self.app.max_input_size)
            msg.body = []
            return
        msg.body.append(body)

    def on_message_complete(self) -> None:
        msg = self.msg
        assert msg is not None
        self.msg = None
        if msg.error is not None:
            msg.keep_alive = False  # the rest of an oversize body is not read
        self.queue.append(msg)
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._run())
        if len(self.queue) > _MAX_PIPELINE and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # requests ---------------------------------------------------------------------------
    async def _run(self) -> None:
        app = self.app
        try:
            while self.queue and not self.closing:
                msg = self.queue.popleft()
                if self.paused and len(self.queue) <= _MAX_PIPELINE // 2 and self.transport:
                    self.paused = False
                    self.transport.resume_reading()
                raw_path = msg.url.split(b"?", 1)[0].decode("latin-1")
                path = unquote(raw_path) if "%" in raw_path else raw_path
                if msg.error is not None:
                    resp = error_response(msg.error)
                    body = resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)
                    self._write(resp.status, [(b"content-type", resp.content_type)], body, False)
                    break
                body = msg.body[0] if len(msg.body) == 1 else b"".join(msg.body)
                req = _Req(msg.method, [p for p in path.split("/") if p], msg.headers, None, app, body)
                status, hdrs, out = await app.handle(req, path)
                if not isinstance(out, bytes):  # generate_stream: server-sent events
                    await out.write_chunked(self.transport, msg.keep_alive)
                else:
                    self._write(status, hdrs, out, msg.keep_alive)
                if not msg.keep_alive:
                    break
        finally:
            self.worker = None
        if self.queue and not self.closing:  # arrived while the last response was written
            self.worker = asyncio.get_running_loop().create_task(self._run())
        self.last_active = time.monotonic()

    def _write(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
        for k, v in headers:
            head.append(k + b": " + v + b"\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if len(body) < 65536:
            head.append(body)
            t.write(b"".join(head))
        else:
            t.writelines([b"".join(head), body])
        if not keep_alive:
            t.close()

    def _fail(self, status: int, text: bytes) -> None:
        body = b'{"error":"' + text.replace(b'"', b"'") + b'"}'
        self._write(status, [(b"content-type", b"application/json")], body, False)


async def serve_http(app: HttpFrontEnd, host: str, port: int, backlog: int,
                     waiting: WaitingClients | None = None
                     ) -> tuple[asyncio.Server, set[HttpConnection]]:
    loop = asyncio.get_running_loop()
    connections: set[HttpConnection] = set()
    server = await loop.create_server(lambda: HttpConnection(app, connections, waiting), host, port,
                                      backlog=backlog, reuse_address=True)

    def sweep() -> None:  # one timer for all connections, not one per request
        if not server.is_serving():
            return
        now = time.monotonic()
        for conn in list(connections):
            conn.close_if_idle(now)
        loop.call_later(min(IDLE_TIMEOUT_S / 4, 1.0), sweep)

    loop.call_later(min(IDLE_TIMEOUT_S / 4, 1.0), sweep)
    return server, connections
