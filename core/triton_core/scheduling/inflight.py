"""Counts a model version's in-flight requests so an unload can wait for them."""

from __future__ import annotations

import threading
import time


class InFlight:
    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __int__(self) -> int:
        return self._count

    def enter(self, n: int = 1) -> None:
        with self._idle:
            self._count += n

    def leave(self, n: int = 1) -> None:
        with self._idle:
            self._count -= n
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False when the timeout passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._count > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True
