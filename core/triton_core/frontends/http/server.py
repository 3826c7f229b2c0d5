"""HTTP/1.1 transport for the front end: httptools parsing on an asyncio Protocol.

Measured against uvicorn (ASGI over httptools) and granian (embedded RSGI) on
perf_analyzer's infer path: a response here is one socket write (uvicorn makes
two) and no ASGI message dicts, which shows in latency at concurrency 1. The
ASGI entry point (HttpFrontEnd.__call__) stays for embedding in other servers.

Limits (HttpLimits; httptools/llhttp itself bounds nothing):

- A request head (request line and headers) of more than ``max_header_size``
  bytes, or with more than ``max_headers`` header fields, is answered 431; a URL
  of more than ``max_url_size`` bytes, 414. A Content-Length over the input size
  limit is answered at the headers, without reading the body. These answers
  close the connection: what more the client sends is dropped unparsed for at most
  ``LINGER_S`` (so the answer is not lost to a reset), then it closes. So is a
  chunked body of more than ``MAX_CHUNKS`` non-empty chunks (Triton's limit and words).
- A request head must arrive whole within ``header_timeout`` seconds of its
  first byte (of the connection's start, for its first request), and a body at
  ``BODY_MIN_RATE`` bytes a second after a grace of ``body_timeout`` seconds;
  else 408 and the connection closes (slow clients cannot hold connections).
- At most ``max_connections`` connections are open: a new one past it closes the
  longest-idle keep-alive connection, or the slowest one still sending its head;
  when every connection has a request in progress, the new one gets 503 and is closed.
- Requests are answered in order (pipelining); reading pauses while parsed
  requests waiting behind the one in progress hold more than ``_MAX_QUEUED_BYTES``
  (or ``_MAX_PIPELINE`` requests), and a response waits for the socket to drain
  (pause_writing) before the next request is handled.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
import time
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from ...errors import TritonError, as_triton_error
from .app import _Req, error_response
from .body import _too_large

log = logging.getLogger("triton_core")

if TYPE_CHECKING:
    from .app import HttpFrontEnd

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_MAX_PIPELINE = 32  # queued requests on one connection before reading pauses
_MAX_QUEUED_BYTES = 1 << 20  # bytes of queued requests (and the one being read) before reading pauses
IDLE_TIMEOUT_S = 75.0  # a connection with no request in flight and no bytes for this long closes
LINGER_S = 5.0  # after a refusal, unread bytes are read and dropped this long (nginx lingering_close)
_SMALL_PIECE = 4096  # body pieces under this size are copied together as they come
MAX_CHUNKS = 1 << 16  # non-empty chunks of one chunked body (Triton's kMaxChunkedChunks)
BODY_MIN_RATE = 1024  # bytes/s a body must average after its grace (Apache mod_reqtimeout: 500)


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP client may hold (the --http-* flags). Defaults as nginx's:
    client_header_timeout 60 s, large_client_header_buffers 8 KiB a line (our URL
    bound); a 64 KiB head and 100 fields as Apache's LimitRequestFields."""

    max_header_size: int = 64 * 1024
    max_headers: int = 100
    max_url_size: int = 8 * 1024
    header_timeout: float = 60.0
    body_timeout: float = 60.0
    max_connections: int = 1024


def fd_bounded(limit: int) -> int:
    """A connection cap that the process's descriptor limit can honour: at most half of
    RLIMIT_NOFILE (the rest for gRPC, model files, sockets of backends), else a flood of
    connections meets EMFILE at accept() and no one is answered at all."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return limit
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, soft // 2))


class _Message:
    __slots__ = ("method", "url", "headers", "body", "size", "keep_alive", "error", "refusal")

    def __init__(self) -> None:
        self.method = ""
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes | bytearray] = []
        self.size = 0
        self.keep_alive = True
        self.error: TritonError | None = None
        self.refusal: tuple[int, bytes] | None = None  # transport-level answer, then close


class _Refused(Exception):
    """Raised while parsing: stop, answer (status, text) or the error, then close."""

    def __init__(self, status: int, text: bytes = b"", error: TritonError | None = None) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text
        self.error = error


class HttpConnection(asyncio.Protocol):
    """One client connection; requests are answered in order (HTTP pipelining)."""

    def __init__(self, app: HttpFrontEnd, connections: set[HttpConnection],
                 limits: HttpLimits | None = None) -> None:
        self.app = app
        self.connections = connections
        self.limits = limits or HttpLimits()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Transfer-Encoding with a Content-Length: the body is read by its chunks and the
        # connection closes after the answer (RFC 9112 6.3), as Triton serves it
        self.parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self.chunks = 0  # non-empty chunks of the body being read
        self.chunk_open = False  # a chunk began and none of its bytes has come yet
        self.msg: _Message | None = None
        self.size = 0
        self.head_size = 0  # bytes of URL and header fields parsed
        self.head_fed = 0  # bytes fed to the parser in this head so far
        self.completed = 0  # requests parsed whole on this connection
        self.header_count = 0
        self.repeated: dict[bytes, list[bytes]] = {}
        self.queue: collections.deque[_Message] = collections.deque()
        self.queued_bytes = 0
        self.worker: asyncio.Task | None = None
        # a request is being answered (until its response is handed to the transport;
        # a client that then reads slowly is closing.close_connections' business)
        self.responding = False
        self.paused = False
        self.closing = False
        self.refused = False  # answering a refusal: what more comes is dropped unparsed
        self.linger_until = 0.0
        self.writable = asyncio.Event()
        self.writable.set()
        now = time.monotonic()
        self.last_active = now
        self.head_started: float | None = now  # the first request's head is due from the start
        self.body_started: float | None = None

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            self.refused = True
            self._fail(503, b"too many open HTTP connections (--http-max-connections)")
            return
        self.connections.add(self)

    def _evict_one(self) -> bool:
        """Make room: close the longest-idle keep-alive connection, else the one that has
        been sending its head longest (a slow client's); never one with a request in progress."""
        idle = [c for c in self.connections if c._idle() and c.head_started is None]
        if idle:
            min(idle, key=lambda c: c.last_active).close()
            return True
        heads = [c for c in self.connections if c._idle() and c.head_started is not None]
        if heads:
            min(heads, key=lambda c: c.head_started or 0.0).close()
            return True
        return False

    def _idle(self) -> bool:
        """No request in progress past its head: nothing queued, nothing handled, no body read."""
        t = self.transport
        return (self.worker is None and not self.queue and self.body_started is None
                and not self.refused and t is not None and not t.is_closing())

    def check_deadlines(self, now: float) -> None:
        """Idle keep-alive connections must not hold descriptors forever, nor slow heads
        and bodies (slowloris) hold connections."""
        if self.closing:
            return
        if self.refused:
            if self.linger_until and now > self.linger_until:
                self.close()
            return
        if not self.paused:  # a paused connection waits for us, not for its client
            lim = self.limits
            if self.head_started is not None and now - self.head_started > lim.header_timeout:
                self._refuse(_Refused(408, b"timed out waiting for the request headers"))
                return
            if (self.body_started is not None
                    and now - self.body_started > lim.body_timeout + self.size / BODY_MIN_RATE):
                self._refuse(_Refused(408, b"timed out waiting for the request body"))
                return
        if (self.worker is None and not self.queue and self.msg is None
                and now - self.last_active > IDLE_TIMEOUT_S):
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        self.writable.set()  # a writer waiting for the drain stops waiting
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()  # cancels the request's await: a queued request is marked cancelled

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # the rest of a refused request is never parsed
        self.last_active = time.monotonic()
        limit = self.limits.max_header_size
        try:
            while data:
                if self.head_started is None:
                    self.parser.feed_data(data)
                    break
                # httptools joins a header's pieces until it ends: feed a head no further
                # than its limit, so one huge header (or URL) is never held whole
                room = limit - self.head_fed
                if room <= 0:
                    raise _Refused(431, b"the request headers are larger than %d bytes "
                                        b"(--http-max-header-size)" % limit)
                piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
                done = self.completed
                self.parser.feed_data(piece)
                if self.head_started is None:
                    self.head_fed = 0
                elif self.completed == done:  # the whole piece went to this head
                    self.head_fed += len(piece)
                else:  # pipelined: this head began after a request inside the piece
                    self.head_fed = self.head_size
        except _Refused as e:
            self._refuse(e)
        except httptools.HttpParserUpgrade:
            self._refuse(_Refused(400, b"protocol upgrades are not supported"))
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            self._refuse(ctx if isinstance(ctx, _Refused)
                         else _Refused(400, f"malformed HTTP request: {e}".encode()))
        except httptools.HttpParserError as e:
            self._refuse(_Refused(400, f"malformed HTTP request: {e}".encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.msg = _Message()
        self.size = 0
        self.chunks = 0
        self.chunk_open = False
        self.head_size = 0
        self.head_fed = 0
        self.header_count = 0
        self.repeated = {}
        if self.head_started is None:
            self.head_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        msg = self.msg
        assert msg is not None
        msg.url += url
        self.head_size += len(url)
        if len(msg.url) > self.limits.max_url_size:
            raise _Refused(414, b"the request URL is longer than %d bytes" % self.limits.max_url_size)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.msg is not None
        lim = self.limits
        self.header_count += 1
        self.head_size += len(name) + len(value) + 4  # ": " and CRLF
        if self.header_count > lim.max_headers:
            raise _Refused(431, b"the request has more than %d header fields "
                                b"(--http-max-headers)" % lim.max_headers)
        if self.head_size > lim.max_header_size:
            raise _Refused(431, b"the request headers are larger than %d bytes "
                                b"(--http-max-header-size)" % lim.max_header_size)
        key = name.lower()
        h = self.msg.headers
        if key in h:  # repeated: joined once at the end (linear, not one copy per field)
            self.repeated.setdefault(key, [h[key]]).append(value)
        else:
            h[key] = value

    def on_headers_complete(self) -> None:
        msg = self.msg
        assert msg is not None
        if self.head_size > self.limits.max_header_size:  # a head of only URL and CRLFs
            raise _Refused(431, b"the request headers are larger than %d bytes "
                                b"(--http-max-header-size)" % self.limits.max_header_size)
        for key, values in self.repeated.items():
            msg.headers[key] = b",".join(values)
        self.repeated = {}
        self.head_started = None
        self.body_started = time.monotonic()
        msg.method = self.parser.get_method().decode("ascii")
        msg.keep_alive = self.parser.should_keep_alive()
        cl = msg.headers.get(b"content-length")
        if cl is not None and b"transfer-encoding" in msg.headers:
            msg.keep_alive = False  # the chunks count, not the length (see __init__)
            cl = None
        if cl is not None:
            try:
                length = int(cl)
            except ValueError:
                msg.error = TritonError.invalid_arg("invalid Content-Length header")
                return
            if length > self.app.max_input_size:
                # answered now, not after a body that may never come; the body is not read
                # only an infer body has a binary section; other routes (generate) are JSON
                all_json = b"content-encoding" not in msg.headers and (
                    b"inference-header-content-length" not in msg.headers
                    or not msg.url.split(b"?", 1)[0].endswith(b"/infer"))
                raise _Refused(0, error=_too_large(self.app.max_input_size,
                                                   length if all_json else None))
        if msg.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_chunk_header(self) -> None:
        self.chunk_open = True

    def on_body(self, body: bytes) -> None:
        msg = self.msg
        assert msg is not None
        if self.chunk_open:  # the first bytes of a non-empty chunk
            self.chunk_open = False
            self.chunks += 1
            if self.chunks > MAX_CHUNKS:
                # Triton's limit and words: a body of many tiny chunks costs far more than
                # its bytes; refused at once, the rest is not read
                raise _Refused(0, error=TritonError.invalid_arg(
                    f"Chunked request body exceeds maximum of {MAX_CHUNKS} non-empty chunks. "
                    "Send fewer or larger HTTP chunks."))
        if msg.error is not None:
            return
        self.size += len(body)
        if self.size > self.app.max_input_size:
            # a chunked body: answered at once, the rest is not read
            raise _Refused(0, error=_too_large(self.app.max_input_size))
        pieces = msg.body
        if len(body) >= _SMALL_PIECE or not pieces or len(pieces[-1]) >= _SMALL_PIECE:
            pieces.append(body)
        elif type(pieces[-1]) is bytearray:
            pieces[-1] += body  # tiny chunks join one buffer: no object kept per chunk
        else:
            pieces[-1] = bytearray(pieces[-1]) + body
        self.queued_bytes += len(body)
        self._bound_reading()

    def on_message_complete(self) -> None:
        msg = self.msg
        assert msg is not None
        self.msg = None
        self.body_started = None
        self.completed += 1
        msg.size = self.size
        self._enqueue(msg)

    # flow ---------------------------------------------------------------------------
    def _enqueue(self, msg: _Message) -> None:
        self.queue.append(msg)
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._run())
        self._bound_reading()

    def _bound_reading(self) -> None:
        """Pause reading while requests wait behind the one being handled and hold too
        much: a pipelining client cannot make us buffer without bound."""
        if (self.worker is not None and self.transport and not self.paused
                and (len(self.queue) > _MAX_PIPELINE or self.queued_bytes > _MAX_QUEUED_BYTES)):
            self.paused = True
            self.transport.pause_reading()

    def _refuse(self, r: _Refused) -> None:
        """Answer after the requests before this one, then close; nothing more is read."""
        if self.refused or self.closing:
            return
        msg = _Message()
        msg.keep_alive = False
        if r.error is not None:
            msg.error = r.error
        else:
            msg.refusal = (r.status, r.text)
        self.refused = True
        self.msg = None
        self.head_started = self.body_started = None
        self._enqueue(msg)

    # requests ---------------------------------------------------------------------------
    async def _run(self) -> None:
        app = self.app
        try:
            while self.queue and not self.closing:
                msg = self.queue.popleft()
                self.queued_bytes -= msg.size
                if (self.paused and not self.refused and len(self.queue) <= _MAX_PIPELINE // 2
                        and self.queued_bytes <= _MAX_QUEUED_BYTES // 2 and self.transport):
                    self.paused = False
                    self.transport.resume_reading()
                if msg.refusal is not None:
                    self._fail(*msg.refusal, linger=True)
                    break
                if msg.error is not None:
                    resp = error_response(msg.error)
                    body = resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)
                    self._write(resp.status, [(b"content-type", resp.content_type)], body, False,
                                linger=self.refused)
                    break
                raw_path = msg.url.split(b"?", 1)[0].decode("latin-1")
                path = unquote(raw_path) if "%" in raw_path else raw_path
                pieces = msg.body
                body = (pieces[0] if len(pieces) == 1 and type(pieces[0]) is bytes
                        else b"".join(pieces))
                req = _Req(msg.method, [p for p in path.split("/") if p], msg.headers, None, app, body)
                self.responding = True
                sent = False
                try:
                    status, hdrs, out = await app.handle(req, path)
                    sent = True
                    if not isinstance(out, bytes):  # generate_stream: server-sent events
                        await out.write_chunked(self.transport, msg.keep_alive)
                    else:
                        self._write(status, hdrs, out, msg.keep_alive)
                except Exception as e:  # noqa: BLE001 - the client gets an answer, never silence
                    err = as_triton_error(e, f"HTTP {msg.method} {path}")
                    if sent or self.transport is None:  # part of a response may be out: cut it
                        if self.transport is not None:
                            self.transport.abort()
                    else:
                        resp = error_response(err)
                        self._write(resp.status, [(b"content-type", resp.content_type)],
                                    resp.body if isinstance(resp.body, bytes) else b"".join(resp.body),
                                    False)
                    break
                finally:
                    self.responding = False
                if not msg.keep_alive:
                    break
                if not self.writable.is_set():  # the client reads slowly: no more responses queue up
                    await self.writable.wait()
        finally:
            self.worker = None
        if self.queue and not self.closing:  # arrived while the last response was written
            self.worker = asyncio.get_running_loop().create_task(self._run())
        elif self.paused and not self.refused and self.transport:
            self.paused = False
            self.transport.resume_reading()
        self.last_active = time.monotonic()

    def _write(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool,
               linger: bool = False) -> None:
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
        if not keep_alive and linger and t.can_write_eof():
            # the client may still be sending the refused request: closing now with its
            # bytes unread would reset the connection and lose this answer; read and drop
            # them a while (data_received), close when the client does or at LINGER_S
            t.write_eof()
            self.linger_until = time.monotonic() + LINGER_S
        elif not keep_alive:
            t.close()

    def _fail(self, status: int, text: bytes, linger: bool = False) -> None:
        body = b'{"error":"' + text.replace(b'"', b"'") + b'"}'
        self._write(status, [(b"content-type", b"application/json")], body, False, linger)


async def serve_http(app: HttpFrontEnd, host: str, port: int, backlog: int,
                     limits: HttpLimits | None = None, *, reuse_port: bool = False,
                     ) -> tuple[asyncio.Server, set[HttpConnection]]:
    loop = asyncio.get_running_loop()
    lim = limits or HttpLimits()
    lim = replace(lim, max_connections=fd_bounded(lim.max_connections))
    connections: set[HttpConnection] = set()
    server = await loop.create_server(lambda: HttpConnection(app, connections, lim), host, port,
                                      backlog=backlog, reuse_address=True,
                                      reuse_port=reuse_port or None)
    # one timer for all connections, not one per request; often enough for the shortest deadline
    tick = max(0.01, min(1.0, IDLE_TIMEOUT_S / 4, lim.header_timeout / 4, lim.body_timeout / 4))

    def sweep() -> None:
        if not server.is_serving():
            return
        now = time.monotonic()
        for conn in list(connections):
            conn.check_deadlines(now)
        loop.call_later(tick, sweep)

    loop.call_later(tick, sweep)
    return server, connections
