"""Run a Server's HTTP front end on a free port in a background event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager

from triton_core.frontends.http.app import HttpFrontEnd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving_http(server, **kwargs):
    """Yields "127.0.0.1:<port>" while the HTTP front end serves `server` (started)."""
    port = free_port()
    front = HttpFrontEnd(server, **kwargs)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_until_complete, args=(front.serve("127.0.0.1", port),),
                         daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not front.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("HTTP front end did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        front.shutdown()
        t.join(10)
        loop.close()
