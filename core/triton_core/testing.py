"""Test support for the core, backend plugins and the conformance suite: one way to build a
server, find a port, run a front end and wait for a condition.

- ``make_server(repo, *plugins, **server_kwargs)``: a Server (not started) over ``repo`` with
  the given plugin modules registered and entry-point discovery off, so the backends a test
  sees do not depend on what else is installed.
- ``free_port()``: a TCP port on 127.0.0.1 free when asked (another process may still take it).
- ``LoopThread``: an asyncio event loop on a daemon thread, for async front ends under a
  synchronous test; ``run(coro)`` waits for the result, ``submit(coro)`` returns a Future.
- ``serving_http(server)``: a context manager yielding "127.0.0.1:<port>" while the HTTP front
  end serves a started ``server``.
- ``wait_until(cond, what, timeout)``: polls ``cond`` until true. Tests synchronise on a
  condition or an event, never on a sleep: the deadline is generous for a loaded CI machine and
  a passing test never reaches it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .server import Server

T = TypeVar("T")

__all__ = ["LoopThread", "free_port", "make_server", "serving_http", "wait_until"]


def make_server(repo: Path | str, *plugins: ModuleType | object, **server_kwargs: Any) -> Server:
    """A Server over ``repo`` (unless ``model_repository`` is given) with ``plugins`` (modules or
    objects with a ``triton_backends`` hook) registered and no entry point loaded; the caller
    starts and stops it. Each plugin is registered under its module's name."""
    from .server import Server

    server_kwargs.setdefault("model_repository", [Path(repo)])
    server = Server(**server_kwargs)
    server.registry.autoload = False
    for p in plugins:
        name = p.__name__ if isinstance(p, ModuleType) else f"{type(p).__module__}.{type(p).__qualname__}"
        server.registry.register_plugin(p, name)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], object], what: str = "condition", timeout: float = 30.0) -> None:
    """Return once ``cond()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.002)


class LoopThread:
    """An asyncio event loop on a background thread, for front ends under a sync test."""

    def __init__(self, name: str = "test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def serving_http(server: Server, **kwargs: Any) -> Iterator[str]:
    """Yields "127.0.0.1:<port>" while the HTTP front end serves ``server`` (started);
    ``kwargs`` go to HttpFrontEnd."""
    from .frontends.http.app import HttpFrontEnd

    port = free_port()
    front = HttpFrontEnd(server, **kwargs)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_until_complete, args=(front.serve("127.0.0.1", port),),
                         daemon=True)
    t.start()
    wait_until(lambda: front.started or not t.is_alive(), "the HTTP front end to start", 10)
    if not front.started:
        raise RuntimeError("HTTP front end did not start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        front.shutdown()
        t.join(10)
        loop.close()
