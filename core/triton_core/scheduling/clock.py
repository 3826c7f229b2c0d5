"""The time the schedulers see: queue delays, request timeouts and sequence idle times.

Schedulers read the time and wait for it through a Clock, so tests can drive timeouts with
a ManualClock instead of sleeping past them. MONOTONIC (time.monotonic_ns) is what serves.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Nanoseconds on a monotonic scale."""
        ...

    def wait(self, cond: threading.Condition, timeout_s: float | None) -> None:
        """``cond.wait(timeout_s)`` (``cond`` held): returns when notified or when the time
        has passed (callers check again either way)."""
        ...


class MonotonicClock:
    __slots__ = ()

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def wait(self, cond: threading.Condition, timeout_s: float | None) -> None:
        cond.wait(timeout_s)


MONOTONIC = MonotonicClock()


class ManualClock:
    """A clock that moves only when told (tests). Waits last until ``advance`` or a notify;
    ``waiters`` counts the threads waiting on it, so a test can wait for a scheduler to sleep
    before moving time. ``timeouts`` holds the ``timeout_s`` of every wait, latest last: what
    a scheduler decided when it last looked (e.g. 0.5: "0.5 s of the queue delay left"), so a
    test can tell it has seen the time it was moved to, without a wall-clock bound."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self._now = start_ns
        self._lock = threading.Lock()
        self._conds: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        self.waiters = 0
        self.timeouts: list[float | None] = []

    def now_ns(self) -> int:
        return self._now

    def wait(self, cond: threading.Condition, timeout_s: float | None) -> None:
        with self._lock:
            self._conds.add(cond)
            self.waiters += 1
            self.timeouts.append(timeout_s)
        try:
            cond.wait()
        finally:
            with self._lock:
                self.waiters -= 1

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every scheduler waiting on this clock."""
        with self._lock:
            self._now += int(seconds * 1e9)
            conds = list(self._conds)
        for cond in conds:
            with cond:
                cond.notify_all()
