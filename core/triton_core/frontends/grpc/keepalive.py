"""A gRPC connection's timing policy, as grpc C-core's server has it: the handshake deadline
(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS), keepalive pings and their timeout, ping strikes
against a client that pings too often, and the maximum connection age with its grace.

Every deadline is kept as a time, and one timer handle is armed for the earliest of them (and
moved when that changes), so a connection holds one handle however long it lives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import ngh2

if TYPE_CHECKING:
    from .h2_connection import GrpcConnection
    from .service import GrpcOptions

log = logging.getLogger("triton_core")

_IDLE_PING_INTERVAL_S = 7200.0  # grpc C-core: the least ping interval without calls, unless permitted
_NEVER = 2**31 - 1  # grpc's INT_MAX: a timeout that is off


def _after(now: float, ms: int | None) -> float | None:
    return now + ms / 1000 if ms is not None and 0 < ms < _NEVER else None


class KeepAlive:
    __slots__ = ("conn", "opts", "loop", "_timer", "_when", "_handshake_at", "_ping_at",
                 "_ping_deadline", "_age_at", "_abort_at", "_pings_without_data", "_strikes",
                 "_last_ping_received")

    def __init__(self, conn: GrpcConnection, opts: GrpcOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.opts = opts
        self.loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._when: float | None = None  # when _timer fires
        self._handshake_at: float | None = None
        self._ping_at: float | None = None  # the next keepalive ping
        self._ping_deadline: float | None = None  # when the oldest unanswered ping times out
        self._age_at: float | None = None
        self._abort_at: float | None = None  # the end of the max-age grace
        self._pings_without_data = 0
        self._strikes = 0
        self._last_ping_received: float | None = None

    def start(self) -> None:
        """The connection is made (over TLS: after its handshake)."""
        o = self.opts
        now = self.loop.time()
        # a client that never sends its preface and SETTINGS would hold the connection (and
        # its socket) for ever
        self._handshake_at = _after(now, o.handshake_timeout_ms)
        self._ping_at = _after(now, o.keepalive_time_ms)
        max_age = o.max_connection_age_ms
        self._age_at = None if max_age is None or max_age >= _NEVER else now + max_age / 1000
        self._arm()

    def stop(self) -> None:
        """The connection is lost: nothing is due any more."""
        self._handshake_at = self._ping_at = self._ping_deadline = self._age_at = None
        self._abort_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._when = None

    def _arm(self) -> None:
        """Arms the timer for the earliest deadline (moved only when that changed)."""
        at = None
        for t in (self._handshake_at, self._ping_at, self._ping_deadline, self._age_at, self._abort_at):
            if t is not None and (at is None or t < at):
                at = t
        if at == self._when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if at is None else self.loop.call_at(at, self._fire)
        self._when = at

    def _fire(self) -> None:
        # what was due when the timer was armed is due now (the loop may run it a clock
        # resolution early)
        due = max(self.loop.time(), self._when or 0.0)
        self._timer = self._when = None
        conn = self.conn
        if self._handshake_at is not None and self._handshake_at <= due:  # --grpc-handshake-timeout
            self._handshake_at = None
            log.debug("gRPC connection closed: no HTTP/2 preface and SETTINGS in time")
            conn.abort()
        if self._ping_deadline is not None and self._ping_deadline <= due:
            self._ping_deadline = None
            log.debug("gRPC keepalive ping not answered: closing the connection")
            conn.abort()  # the peer is gone or stuck: what is unsent would hold close()
        if self._abort_at is not None and self._abort_at <= due:  # the grace is over
            self._abort_at = None
            conn.abort()
        if self._age_at is not None and self._age_at <= due:  # --grpc-max-connection-age
            self._age_at = None
            conn.go_away()
            grace = self.opts.max_connection_age_grace_ms
            if grace is not None and grace < _NEVER:  # 0: at the timer's next turn
                self._abort_at = due + grace / 1000
        if self._ping_at is not None and self._ping_at <= due:
            self._keepalive(due)
        self._arm()

    def _keepalive(self, now: float) -> None:
        o = self.opts
        t = self.conn.transport
        if t is None or t.is_closing():
            self._ping_at = None
            return
        self._ping_at = now + o.keepalive_time_ms / 1000
        can = o.keepalive_permit_without_calls or self.conn.streams
        limit = o.http2_max_pings_without_data
        if can and (limit == 0 or self._pings_without_data < limit):
            self._pings_without_data += 1
            if self._ping_deadline is None:  # else the older unanswered ping's deadline holds
                self._ping_deadline = now + o.keepalive_timeout_ms / 1000
            self.conn.h2.ping(b"tritonka")
            self.conn.flush()

    # events of the connection --------------------------------------------------------------
    def handshake_done(self) -> None:
        """The client's preface and SETTINGS came."""
        if self._handshake_at is not None:
            self._handshake_at = None
            self._arm()

    def ping_acknowledged(self) -> None:
        # the timer, if armed for this deadline, finds nothing due and moves on
        self._ping_deadline = None

    def sent(self) -> None:
        """HEADERS or DATA went out: ping strikes start over (grpc C-core's ResetPingStrikes)."""
        self._strikes = 0
        self._last_ping_received = None

    def data_sent(self) -> None:
        """DATA went out: keepalive pings may go again, and ping strikes start over."""
        self._pings_without_data = 0
        self._strikes = 0
        self._last_ping_received = None

    def ping_received(self) -> None:
        """Too many pings without data get a GOAWAY, as grpc C-core does (ping strikes)."""
        o = self.opts
        now = time.monotonic()
        last, self._last_ping_received = self._last_ping_received, now
        if last is None or o.http2_max_ping_strikes == 0:
            return
        least = o.http2_min_recv_ping_interval_without_data_ms / 1000
        if not self.conn.streams and not o.keepalive_permit_without_calls:
            least = max(least, _IDLE_PING_INTERVAL_S)
        if now - last < least:
            self._strikes += 1
            if self._strikes > o.http2_max_ping_strikes:
                conn = self.conn
                conn.h2.send_goaway(ngh2.ErrorCode.ENHANCE_YOUR_CALM, debug_data=b"too_many_pings")
                conn.flush()
                conn.close()
