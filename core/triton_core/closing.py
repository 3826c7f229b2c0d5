"""Closing a front end's client connections when it stops.

``transport.close()`` waits until the transport's unsent bytes are written: a client
that stopped reading keeps its connection (and its socket) open for ever, and on
Python 3.12+ ``Server.wait_closed()`` waits for it. Connections still open after a
short grace are aborted: their unsent bytes are dropped and the socket closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Protocol


class _Connection(Protocol):
    transport: asyncio.BaseTransport | None

    def close(self) -> None: ...


CLOSE_GRACE_S = 1.0


async def close_connections(connections: Collection[_Connection],
                            grace: float = CLOSE_GRACE_S) -> None:
    """Close every connection; abort those ``connections`` still holds after ``grace``
    (each connection leaves the collection when its transport is lost)."""
    for c in list(connections):
        c.close()
    loop = asyncio.get_running_loop()
    end = loop.time() + grace
    while connections and loop.time() < end:
        await asyncio.sleep(0.01)
    for c in list(connections):
        t = c.transport
        if t is not None:
            t.abort()  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # connection_lost runs on the next loop iteration
