"""One call of the native gRPC engine (an HTTP/2 stream), its state, and what its servicer
method sees of it.

A call's state is the server's view of its stream, as HTTP/2 (RFC 9113 5.1) and gRPC over
HTTP/2 have it, with the response headers as a step of its own (they are sent once, before the
first message, or with the status when there is no message: trailers-only)::

    OPEN ───request ends──▶ HALF_CLOSED_REMOTE
     │ headers                    │ headers
     ▼                            ▼
    RESPONDING ─request ends─▶ RESPONDING_HALF_CLOSED
     │ status                     │ status
     ▼                            ▼
    CLOSED_LOCAL ─request ends─▶ CLOSED
    (OPEN and HALF_CLOSED_REMOTE may send their status at once: trailers-only)

    any ──▶ RESET: the client reset the call or went away, libnghttp2 reset it (the peer's
    error), or we did (RST_STREAM after the status: gRPC's "stop sending"; CANCEL past the
    deadline).

A call in CLOSED_LOCAL owes the client an RST_STREAM(NO_ERROR) once its status has gone out
(h2_connection's _stop_client); one in CLOSED or RESET is over. ``transition`` refuses any
other move: a refused move is a bug in the connection, not the client's doing.
"""

from __future__ import annotations

import asyncio
import enum
import time
from typing import TYPE_CHECKING, Any

from . import wire
from .status import StatusCode
from .wire import WireError

if TYPE_CHECKING:
    from .h2_connection import GrpcConnection
    from .h2_server import Route


class CallState(enum.Enum):
    """Each state answers the three questions the connection asks of a call: has the client's
    side ended, have the response headers gone out, is our side done (status sent or reset)."""

    #                        (n, ended, headers_sent, closed)
    OPEN = (0, False, False, False)
    HALF_CLOSED_REMOTE = (1, True, False, False)
    RESPONDING = (2, False, True, False)
    RESPONDING_HALF_CLOSED = (3, True, True, False)
    CLOSED_LOCAL = (4, False, True, True)
    CLOSED = (5, True, True, True)
    RESET = (6, True, True, True)  # nothing more comes, nothing more goes

    def __init__(self, _n: int, ended: bool, headers_sent: bool, closed: bool) -> None:
        self.ended = ended  # the client's side is done
        self.headers_sent = headers_sent
        self.closed = closed  # our side is done: the status was sent, or the call was reset


_S = CallState
# the legal moves (the docstring's diagram)
_MOVES: dict[CallState, frozenset[CallState]] = {
    _S.OPEN: frozenset({_S.HALF_CLOSED_REMOTE, _S.RESPONDING, _S.CLOSED_LOCAL, _S.RESET}),
    _S.HALF_CLOSED_REMOTE: frozenset({_S.RESPONDING_HALF_CLOSED, _S.CLOSED, _S.RESET}),
    _S.RESPONDING: frozenset({_S.RESPONDING_HALF_CLOSED, _S.CLOSED_LOCAL, _S.RESET}),
    _S.RESPONDING_HALF_CLOSED: frozenset({_S.CLOSED, _S.RESET}),
    _S.CLOSED_LOCAL: frozenset({_S.CLOSED, _S.RESET}),
    _S.CLOSED: frozenset({_S.RESET}),  # the client's RST_STREAM may follow our status
    _S.RESET: frozenset(),
}
# the request's end, by state (a call over already is left as it is)
_ENDED = {_S.OPEN: _S.HALF_CLOSED_REMOTE, _S.RESPONDING: _S.RESPONDING_HALF_CLOSED,
          _S.CLOSED_LOCAL: _S.CLOSED}


class IllegalTransition(RuntimeError):
    pass


class Stream:
    """One call (an HTTP/2 stream): its state, and what the connection keeps for it."""

    __slots__ = ("id", "route", "headers", "reader", "messages", "task", "state", "deadline",
                 "timer", "gzip", "payload", "received", "acked", "waiting")

    def __init__(self, sid: int, route: Route, headers: tuple, reader: wire.MessageReader) -> None:
        self.id = sid
        self.route = route
        self.headers = headers
        self.reader = reader
        # a streaming call's messages, each with its end (an offset in the request body)
        self.messages: asyncio.Queue[tuple[bytes, int] | None] | None = None
        self.task: asyncio.Task | None = None
        self.state = CallState.OPEN
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.gzip = 0  # zlib level for response messages, 0: uncompressed
        self.payload: bytes | None = None
        # a streaming call's request body: bytes received, and acknowledged (given back to the
        # client's flow-control windows) as its handler takes the messages
        self.received = 0
        self.acked = 0
        # its handler waits for a message (the reader's condition, not the call's: a waiting
        # handler is given back what it holds unread, see GrpcConnection._on_data)
        self.waiting = False

    def transition(self, to: CallState) -> None:
        if to not in _MOVES[self.state]:
            raise IllegalTransition(f"gRPC call {self.id}: {self.state.name} -> {to.name}")
        self.state = to

    def request_ended(self) -> None:
        """The client's side is done (END_STREAM); a call already reset stays so."""
        to = _ENDED.get(self.state)
        if to is not None:
            self.state = to

    def headers_out(self) -> None:
        self.transition(_S.RESPONDING_HALF_CLOSED if self.state.ended else _S.RESPONDING)

    def status_out(self) -> None:
        """The status went to libnghttp2 (trailers, or trailers-only)."""
        self.transition(_S.CLOSED if self.state.ended else _S.CLOSED_LOCAL)

    def reset(self) -> None:
        if self.state is not _S.RESET:
            self.transition(_S.RESET)


class Call:
    """What a servicer method sees of its call (the part of grpc.aio.ServicerContext we use)."""

    __slots__ = ("_conn", "_stream")

    def __init__(self, conn: GrpcConnection, stream: Stream) -> None:
        self._conn = conn
        self._stream = stream

    async def abort(self, code: StatusCode, details: str = "") -> None:
        raise WireError(code, details)

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        # as grpc.aio: -bin values decoded to bytes (_on_request refused malformed ones)
        return tuple((k.decode("latin-1"),
                      (wire.decode_binary(v) or b"") if k.endswith(b"-bin") else v.decode("latin-1"))
                     for k, v in self._stream.headers if not k.startswith(b":"))

    def time_remaining(self) -> float | None:
        d = self._stream.deadline
        return None if d is None else max(0.0, d - time.monotonic())

    async def write(self, message: Any) -> None:
        await self._conn.write_message(self._stream, self._stream.route.encode(message))


async def abort(context: Any, code: StatusCode, details: str) -> None:
    """Ends a servicer method's call with ``code``, on either engine: the native engine's
    Call takes these codes, grpc.aio's context grpcio's own."""
    await context.abort(code if isinstance(context, Call) else code.grpcio(), details)
