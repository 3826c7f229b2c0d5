"""Closing a front end's client connections when it stops.

A stop first drains (drain_connections): the listener is closed by the caller, idle
connections are closed, and connections with a request in flight keep going until
their responses are written or the exit timeout passes (Triton's --exit-timeout-secs:
in-flight requests get their responses, then the connections close).

``transport.close()`` waits until the transport's unsent bytes are written: a client
that stopped reading keeps its connection (and its socket) open for ever, and on
Python 3.12+ ``Server.wait_closed()`` waits for it. A connection whose unsent bytes
have not gone down for ``grace`` seconds is aborted (they are dropped and the socket
closed); one still draining may take up to ``limit``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Protocol


class _Connection(Protocol):
    transport: asyncio.BaseTransport | None

    def close(self) -> None: ...


CLOSE_GRACE_S = 1.0
CLOSE_LIMIT_S = 30.0
_TICK_S = 0.02


def _unsent(t: asyncio.BaseTransport | None) -> int:
    try:
        return t.get_write_buffer_size() if t is not None else 0  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return 0


async def close_connections(connections: Collection[_Connection], grace: float = CLOSE_GRACE_S,
                            limit: float = CLOSE_LIMIT_S) -> None:
    """Close every connection; abort those that stop draining (each connection leaves
    ``connections`` when its transport is lost)."""
    for c in list(connections):
        c.close()
    loop = asyncio.get_running_loop()
    start = loop.time()
    progress: dict[int, tuple[int, float]] = {}  # id(connection): (unsent, since when)
    aborted: set[int] = set()
    while connections:
        now = loop.time()
        for c in list(connections):
            key = id(c)
            if key in aborted:
                continue
            unsent = _unsent(c.transport)
            seen = progress.get(key)
            if now - start < limit and (seen is None or unsent < seen[0]):
                progress[key] = (unsent, now)  # still draining: the client reads
            elif seen is None or now - seen[1] >= grace or now - start >= limit:
                aborted.add(key)
                if c.transport is not None:
                    c.transport.abort()  # type: ignore[attr-defined]
        await asyncio.sleep(_TICK_S)


async def drain_connections(connections: Collection[_Connection],
                            busy: Callable[[_Connection], bool], timeout: float) -> bool:
    """Close connections as they become idle; wait for those ``busy`` (a request in
    flight) until none is left or ``timeout`` passes. True when every one drained."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        pending = False
        for c in list(connections):
            if busy(c):
                pending = True
            else:
                c.close()  # idle (keep-alive): nothing to wait for
        if not pending:
            return True
        if loop.time() >= end:
            return False
        await asyncio.sleep(_TICK_S)
