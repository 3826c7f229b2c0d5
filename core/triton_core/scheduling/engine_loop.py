"""The event loop that loop drivers (scheduling/loop_driver.py) run on.

The front ends attach the loop they serve on, so requests they receive reach a
process-backed instance with no thread in between. Without a front end (a Server
used in-process, from threads) a private loop starts on its own thread at first use.
"""

from __future__ import annotations

import asyncio
import threading


class EngineLoop:
    """The server's loop for loop drivers: the front ends' if attached, else a private one."""

    def __init__(self, name: str = "triton-engine") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._attached: list[tuple[asyncio.AbstractEventLoop, int]] = []  # (loop, thread id)
        self._private: asyncio.AbstractEventLoop | None = None
        self._private_thread: threading.Thread | None = None
        # changes whenever the loop get() answers may change (drivers rebind when idle)
        self.generation = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """A front end serves on ``loop`` (call from that loop's thread)."""
        with self._lock:
            self._attached.append((loop, threading.get_ident()))
            self.generation += 1

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The front end on ``loop`` stopped serving."""
        with self._lock:
            for i, (lp, _) in enumerate(self._attached):
                if lp is loop:
                    del self._attached[i]
                    self.generation += 1
                    return

    def get(self) -> tuple[asyncio.AbstractEventLoop, int]:
        """(loop, the thread it runs on): the first attached one, else the private one."""
        with self._lock:
            if self._attached:
                return self._attached[0]
            if self._private is None or self._private.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                t.start()
                self._private, self._private_thread = loop, t
                self.generation += 1
            assert self._private_thread is not None and self._private_thread.ident is not None
            return self._private, self._private_thread.ident

    def close(self) -> None:
        """Stop the private loop (the server stopped; attached loops are their owners')."""
        with self._lock:
            loop, t = self._private, self._private_thread
            self._private = self._private_thread = None
            self.generation += 1
        if loop is not None and t is not None:
            loop.call_soon_threadsafe(loop.stop)
            t.join(timeout=10)
            if not t.is_alive():
                loop.close()
