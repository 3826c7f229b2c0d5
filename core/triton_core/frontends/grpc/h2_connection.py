"""One client connection of the native gRPC engine: HTTP/2 by libnghttp2 (through ngh2,
sans-I/O) on an asyncio Protocol, each call handled by the same servicer as on grpc.aio.

Why not grpc.aio: per unary call it costs the event loop about as much CPU as our whole
HTTP path (completion-queue events handed over from its poller thread). Here a call is
one ``receive_data`` in, one task, and one socket write out.

Each call's state (and the moves allowed between states) is in call.py; the handshake
deadline, keepalive pings, ping strikes and the connection's age are in keepalive.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import ngh2

from ...errors import as_triton_error
from . import wire
from .call import Call, Stream
from .keepalive import KeepAlive
from .status import StatusCode
from .wire import WireError

if TYPE_CHECKING:
    from .h2_server import H2Server

log = logging.getLogger("triton_core")

_OK = [(b"grpc-status", b"0")]
_STREAM_BUFFER = 4 << 20  # a stream's queued response bytes before write() waits for the peer
_WINDOW = 16 << 20  # a stream's receive window: what a streaming call may hold unread
# The connection's receive window: the largest there is. libnghttp2 acknowledges a stream's
# bytes and the connection's together (ngh2 has no connection-only acknowledgement), so the
# bytes a streaming call holds unread (up to _WINDOW) hold back the connection window too:
# with one window per connection, one stalled call would stop every other call on it. The
# streams' windows bound what is held; this one only has to outlast them. Connection
# WINDOW_UPDATEs go out at half the window, so about 64 calls holding full windows (1 GiB)
# on one connection are needed before its other calls wait.
_CONNECTION_WINDOW = 2**31 - 1
_MAX_FRAME = 1 << 20
# grpc C-core's hard limit on a call's metadata (GRPC_ARG_ABSOLUTE_MAX_METADATA_SIZE): a larger
# header block is refused with its status and words. libnghttp2 reads up to 1 MiB (h2_server.py)
# so that the call can be answered; beyond that it resets the stream itself.
MAX_METADATA_SIZE = 16 << 10


class GrpcConnection(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.opts = server.options
        self.h2 = ngh2.Connection(ngh2.Role.SERVER, server.h2_config)
        self.unacked = 0  # bytes received and not acknowledged yet, on every stream
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        # streams ended before the client's side whose status waits behind their responses
        # (flow control): reset once it has gone out (_send_resets)
        self._resets: dict[int, Stream] = {}
        self.loop = asyncio.get_running_loop()
        self._writable: asyncio.Future | None = None
        self._paused = False
        self._going_away = False
        # the handshake deadline, keepalive pings, ping strikes, and the connection's age
        self.keepalive = KeepAlive(self, self.opts, self.loop)

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.h2.initiate_connection({
            ngh2.Setting.MAX_CONCURRENT_STREAMS: 1 << 16,
            ngh2.Setting.INITIAL_WINDOW_SIZE: _WINDOW,
            ngh2.Setting.MAX_FRAME_SIZE: _MAX_FRAME,
        })
        self.h2.set_local_window_size(_CONNECTION_WINDOW)
        self.flush()
        self.keepalive.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.keepalive.stop()
        for s in list(self.streams.values()):
            self._drop(s)
        self.streams.clear()
        self._resets.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        h2 = self.h2
        try:
            h2.receive_data(data)
        except ngh2.NGH2Error as e:
            log.debug("gRPC connection closed on an HTTP/2 error: %s", e)
            self.flush()
            self.close()
            return
        if self._handle(h2.events()):
            self.flush()
            if self._resets:  # WINDOW_UPDATEs may have let a waiting status out
                self._send_resets()
            # libnghttp2's own RST_STREAM (the peer's stream error) closes its stream as it is
            # sent, in flush(): the StreamClosed shows only now
            self._handle(h2.events())

    def _handle(self, events: list) -> bool:
        """False when the connection closes."""
        for ev in events:
            t = type(ev)
            if t is ngh2.DataReceived:
                self._on_data(ev.stream_id, ev.data, ev.end_stream)
            elif t is ngh2.RequestReceived:
                self._on_request(ev.stream_id, ev.headers, ev.end_stream)
            elif t is ngh2.StreamReset:
                s = self.streams.pop(ev.stream_id, None)
                if s is not None:
                    self._drop(s)
            elif t is ngh2.StreamClosed:
                s = self.streams.pop(ev.stream_id, None)
                if s is not None and not s.state.closed:  # libnghttp2 reset it (the peer's error)
                    self._drop(s)
            elif t is ngh2.TrailersReceived:
                self._on_data(ev.stream_id, b"", True)
            elif t is ngh2.WindowUpdated:
                self._wake_writers()
            elif t is ngh2.SettingsReceived:
                self.keepalive.handshake_done()
            elif t is ngh2.PingReceived:
                self.keepalive.ping_received()
            elif t is ngh2.PingAcknowledged:
                self.keepalive.ping_acknowledged()
            elif t is ngh2.ConnectionClosed:
                self.flush()
                self.close()
                return False
        return True

    # calls ------------------------------------------------------------------------------
    def _on_request(self, sid: int, headers: tuple, end_stream: bool) -> None:
        method = b""
        path = b""
        ctype = b""
        encoding = b""
        accept = b""
        timeout = None
        bad_binary = None
        size = 0
        for k, v in headers:
            size += len(k) + len(v) + 32  # HPACK's size of an entry (RFC 7541 4.1), as C-core counts
            if k == b":path":
                path = v
            elif k == b":method":
                method = v
            elif k == b"content-type":
                ctype = v
            elif k == b"grpc-encoding":
                encoding = v
            elif k == b"grpc-accept-encoding":
                accept = v
            elif k == b"grpc-timeout":
                timeout = wire.parse_timeout(v)
            elif k.endswith(b"-bin") and bad_binary is None and wire.decode_binary(v) is None:
                bad_binary = k
        if method != b"POST":  # grpc C-core's answer (http_server_filter); no handler runs
            self._refuse(Stream(sid, None, headers, None), end_stream,  # type: ignore[arg-type]
                         WireError(StatusCode.UNKNOWN, "Bad method header"))
            return
        if not ctype.startswith(b"application/grpc"):
            self.h2.send_response(sid, [(b":status", b"415")], end_stream=True)
            if not end_stream:  # the client may stop sending the body (see _stop_client)
                self.flush()
                self._reset(sid)
            return
        route = self.server.routes.get(path)
        s = Stream(sid, route, headers, wire.MessageReader(encoding, self.opts.max_receive_message_length))  # type: ignore[arg-type]
        if size > MAX_METADATA_SIZE:  # grpc C-core's words
            self._refuse(s, end_stream, WireError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"received metadata size exceeds hard limit ({size} vs. {MAX_METADATA_SIZE})"))
            return
        if bad_binary is not None:
            self._refuse(s, end_stream, wire.binary_error(bad_binary))
            return
        if route is None:
            self._refuse(s, end_stream, WireError(StatusCode.UNIMPLEMENTED, "Method not found!"))
            return
        refusal = self.server.refusal(route, headers)
        if refusal is not None:
            self._refuse(s, end_stream, WireError(StatusCode.UNAVAILABLE, refusal))
            return
        if self.server.gzip_level and b"gzip" in accept:
            s.gzip = self.server.gzip_level
        self.streams[sid] = s
        if timeout is not None:
            s.deadline = time.monotonic() + timeout
            s.timer = self.loop.call_later(timeout, self._expire, s)
        if route.streaming:
            s.messages = asyncio.Queue()
            s.task = self.loop.create_task(self._run_stream(s))
            self.server.track(s.task)
        if end_stream:
            self._on_data(sid, b"", True)

    def _refuse(self, s: Stream, end_stream: bool, e: WireError) -> None:
        """Ends a call no handler runs for (it was never in self.streams)."""
        if end_stream:  # when not, the status is followed by a reset
            s.request_ended()
        self._finish(s, e.code, e.details)

    def _on_data(self, sid: int, data: bytes, end: bool) -> None:
        s = self.streams.get(sid)
        n = len(data)
        self.unacked += n
        if s is None or s.state.closed or s.state.ended:
            if n:  # nobody reads these: the client may send on
                self._acknowledge(sid, n)
            if end and s is not None:  # a reset waiting for the status has nothing to stop
                s.request_ended()
            return
        q = s.messages
        ends: list[int] = []
        base = 0
        if q is None:
            if n:  # a unary call: its size is bounded by max_receive_message_length
                self._acknowledge(sid, n)
        else:  # a streaming call: acknowledged as its handler takes the messages (_requests)
            base = s.received - s.reader.held  # where the reader's held bytes start
            s.received += n
        try:
            msgs = s.reader.feed(data, None if q is None else ends) if data else []
            if end and s.reader.partial:
                raise WireError(StatusCode.INTERNAL, "the request ended inside a message")
        except WireError as e:
            if end:  # else the status is followed by a reset: the client may stop sending
                s.request_ended()
            self._finish(s, e.code, e.details)
            self._stop_handler(s)  # a stream's handler waits for requests no more
            return
        if end:
            s.request_ended()
        if q is not None:
            for m, e in zip(msgs, ends, strict=True):
                q.put_nowait((m, base + e))
            if end:
                q.put_nowait(None)
            elif s.waiting and q.empty():
                # the handler waits for a message that has not all come: as in _requests, the
                # client may send on (a message may be larger than the window)
                self._consumed(s, s.received)
            return
        if msgs:
            if s.payload is not None or len(msgs) > 1:
                self._finish(s, StatusCode.UNIMPLEMENTED,
                             "more than one request message in a unary call")
                return
            s.payload = msgs[0]
        if end:
            if s.payload is None:
                self._finish(s, StatusCode.UNIMPLEMENTED, "no request message in a unary call")
                return
            s.task = self.loop.create_task(self._run_unary(s))
            self.server.track(s.task)

    async def _run_unary(self, s: Stream) -> None:
        route = s.route
        payload = s.payload
        s.payload = None
        try:
            msg = route.decode(payload)
        except Exception as e:  # noqa: BLE001 - the client's bytes, not a server bug
            self._finish(s, StatusCode.INTERNAL, f"Exception deserializing request: {e}")
            return
        try:
            resp = await route.handler(msg, Call(self, s))
            body = route.encode(resp)
        except WireError as e:
            self._finish(s, e.code, e.details)
        except asyncio.CancelledError:
            self._cancelled(s)
        except Exception as e:  # noqa: BLE001 - a bug must not look like a dropped connection
            self._finish(s, StatusCode.INTERNAL,
                         as_triton_error(e, f"gRPC call {route.name}").message)
        else:
            if not s.state.closed:
                self._respond(s, body)

    async def _run_stream(self, s: Stream) -> None:
        route = s.route
        try:
            await route.handler(self._requests(s), Call(self, s))
        except WireError as e:
            self._finish(s, e.code, e.details)
        except asyncio.CancelledError:
            self._cancelled(s)
        except Exception as e:  # noqa: BLE001 - a bug must not look like a dropped connection
            self._finish(s, StatusCode.INTERNAL,
                         as_triton_error(e, f"gRPC call {route.name}").message)
        else:
            self._finish(s, StatusCode.OK, "")

    async def _requests(self, s: Stream):  # noqa: ANN202 - an async generator of messages
        q = s.messages
        assert q is not None
        decode = s.route.decode
        while True:
            if q.empty():
                # The handler asks for more and all it has not taken is the start of the next
                # message: given back, as a message may be larger than the stream's window.
                if self._consumed(s, s.received):
                    self.flush()
                s.waiting = True
                try:
                    item = await q.get()
                finally:
                    s.waiting = False
            else:
                item = q.get_nowait()
            if item is None:
                return
            m, end = item
            if self._consumed(s, end):  # the client may send as much again
                self.flush()
            try:
                msg = decode(m)
            except Exception as e:  # noqa: BLE001 - the stream ends with the reason
                self._finish(s, StatusCode.INTERNAL, f"Exception deserializing request: {e}")
                self._stop_handler(s)  # the call is over: its handler and requests are cancelled
                return
            yield msg

    def _cancelled(self, s: Stream) -> None:
        # the server is stopping (a reset, a lost connection or the deadline closed the call
        # already: then _finish has nothing to do)
        self._finish(s, StatusCode.UNAVAILABLE, "the server is shutting down")

    def _expire(self, s: Stream) -> None:
        s.timer = None
        if s.state.closed:
            return
        self._cancel_task(s)
        self._finish(s, StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if self.h2.queued_body_size(s.id):
            # the status waits behind responses the client has not read: past its deadline the
            # call ends now, with what is unsent (grpc C-core drops unsent messages too)
            self._resets.pop(s.id, None)
            self._reset(s.id, ngh2.ErrorCode.CANCEL)
            s.reset()
        self.streams.pop(s.id, None)

    def _drop(self, s: Stream) -> None:
        """The client reset the call or went away: its handler is cancelled."""
        s.reset()
        self._stop_handler(s)

    def _stop_handler(self, s: Stream) -> None:
        """The call is over (its status sent, or reset): its handler is cancelled, and what
        the call holds unread is given back."""
        if s.timer is not None:
            s.timer.cancel()
        self._cancel_task(s)
        if s.messages is not None:
            s.messages.put_nowait(None)
            if self._consumed(s, s.received):  # what it held unread is given back
                self.flush()

    def _cancel_task(self, s: Stream) -> None:
        t = s.task
        if t is not None and not t.done():
            t.cancel()
            s.payload = None  # a unary call whose task never ran

    # flow control -----------------------------------------------------------------------
    def _acknowledge(self, sid: int, n: int) -> None:
        """Gives ``n`` received bytes of stream ``sid`` back to the client's windows, the
        stream's and the connection's (libnghttp2's nghttp2_session_consume). A stream closed
        meanwhile is no matter: its bytes still count in the connection window."""
        self.unacked -= n
        try:
            self.h2.acknowledge_received_data(n, sid)
        except ngh2.NGH2Error:  # the connection failed: no window to give back
            pass

    def _consumed(self, s: Stream, upto: int) -> bool:
        """A streaming call's request body up to offset ``upto`` is read: acknowledges what
        was not. True when a WINDOW_UPDATE may wait to be sent."""
        n = upto - s.acked
        if n <= 0:
            return False
        s.acked = upto
        self._acknowledge(s.id, n)
        return True

    # responses --------------------------------------------------------------------------
    def _response_headers(self, s: Stream) -> list[tuple[bytes, bytes]]:
        h = [(b":status", b"200"), (b"content-type", b"application/grpc"),
             (b"grpc-accept-encoding", wire.ACCEPT_ENCODING)]
        if s.gzip:
            h.append((b"grpc-encoding", b"gzip"))
        return h

    def _send_message(self, s: Stream, body: bytes) -> bool:
        limit = self.opts.max_send_message_length
        if len(body) > limit:
            self._finish(s, StatusCode.RESOURCE_EXHAUSTED,
                         f"Sent message larger than max ({len(body)} vs. {limit})")
            if s.messages is not None:  # the call is over: its handler stops reading
                self._stop_handler(s)
            return False
        h2 = self.h2
        if not s.state.headers_sent:
            s.headers_out()
            h2.send_response(s.id, self._response_headers(s))
        if s.gzip:
            h2.send_data(s.id, wire.frame(wire.compress(body, s.gzip), True))
        elif len(body) < 65536:
            h2.send_data(s.id, b"\x00" + len(body).to_bytes(4, "big") + body)
        else:  # no copy of a large body
            h2.send_data(s.id, b"\x00" + len(body).to_bytes(4, "big"))
            h2.send_data(s.id, body)
        self.keepalive.data_sent()
        return True

    def _respond(self, s: Stream, body: bytes) -> None:
        if self._send_message(s, body):
            self._close_stream(s, _OK)
            self.flush()

    async def write_message(self, s: Stream, body: bytes) -> None:
        if s.state.closed:
            return
        if not self._send_message(s, body):
            return
        self.flush()
        while (self._paused or self.h2.queued_body_size(s.id) > _STREAM_BUFFER) and not s.state.closed \
                and self.transport is not None and not self.transport.is_closing():
            if self._writable is None or self._writable.done():
                self._writable = self.loop.create_future()
            await self._writable

    def _wake_writers(self) -> None:
        w = self._writable
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self, s: Stream, code: StatusCode, details: str) -> None:
        """Ends the call with a status (trailers-only when nothing was sent yet)."""
        if s.state.closed:
            return
        status = _OK if code is StatusCode.OK else wire.status_headers(code, details)
        if s.state.headers_sent:
            self._close_stream(s, status)
        else:  # trailers-only
            s.status_out()
            self._forget(s)
            try:
                self.h2.send_response(s.id, self._response_headers(s) + status, end_stream=True)
            except ngh2.NGH2Error:
                return
            self.keepalive.sent()
        self.flush()
        self._stop_client(s)

    def _stop_client(self, s: Stream) -> None:
        """The status is sent and the client's side is still open: RST_STREAM(NO_ERROR) tells
        it to stop sending (gRPC over HTTP/2; grpc C-core does so). Only once the status has
        gone out: a reset drops what is queued for the stream, the status with it."""
        if s.state.ended:
            return
        if self._held(s.id):
            self._resets[s.id] = s
            return
        self.streams.pop(s.id, None)  # what still arrives is acknowledged as it comes
        if s.messages is not None:  # a handler still reading sees the end of its requests
            s.messages.put_nowait(None)
        self._reset(s.id)
        s.reset()

    def _held(self, sid: int) -> bool:
        """The stream's status may still wait in libnghttp2: behind responses flow control
        holds, or behind a window used up exactly (even the empty last DATA read waits)."""
        h2 = self.h2
        try:
            return bool(h2.queued_body_size(sid)) or h2.stream_remote_window_size(sid) <= 0 \
                or h2.remote_window_size <= 0
        except ngh2.NGH2Error:
            return False  # the stream is gone: nothing of it is queued

    def _send_resets(self) -> None:
        for sid, s in list(self._resets.items()):
            if self.streams.get(sid) is not s or s.state.ended:  # the client reset it or ended too
                del self._resets[sid]
            elif not self._held(sid):  # the status has gone out
                del self._resets[sid]
                self.streams.pop(sid, None)
                if s.messages is not None:
                    s.messages.put_nowait(None)
                self._reset(sid)
                s.reset()

    def _reset(self, sid: int, code: int = ngh2.ErrorCode.NO_ERROR) -> None:
        """After a reset libnghttp2 reads what the client still sends for the stream itself,
        counting it for the connection window (no DataReceived)."""
        try:
            self.h2.reset_stream(sid, code)
        except ngh2.NGH2Error:
            return
        self.flush()

    def _close_stream(self, s: Stream, trailers: list[tuple[bytes, bytes]]) -> None:
        s.status_out()
        self._forget(s)
        try:
            self.h2.send_trailers(s.id, trailers)
        except ngh2.NGH2Error:
            pass

    def _forget(self, s: Stream) -> None:
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None
        # nothing more is read: what the call holds unread is given back (the callers flush),
        # and what arrives from now on is acknowledged as it comes (_on_data)
        self._consumed(s, s.received)
        if s.state.ended:  # both sides are done: nothing more comes for this stream
            self.streams.pop(s.id, None)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        t = self.transport
        if data and t is not None and not t.is_closing():
            t.write(data)

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def abort(self) -> None:
        """Close now, dropping unsent bytes: close() would wait for a peer that may never
        read them again."""
        t = self.transport
        if t is not None:
            t.abort()

    # connection management -----------------------------------------------------------------
    def go_away(self) -> None:
        """Shutdown: no new calls; the calls in flight finish."""
        if not self._going_away:
            self._going_away = True
            try:
                self.h2.send_goaway(ngh2.ErrorCode.NO_ERROR)
            except ngh2.NGH2Error:
                pass
            self.flush()
