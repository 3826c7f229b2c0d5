"""The thread driver: an instance's own thread runs its batches (scheduling/driver.py)."""

from __future__ import annotations

import threading
import time

from .. import abi
from .completion import Completion
from .rate_limiter import LimitedInstance, RateLimiter
from .scheduler import Scheduler


class ThreadDriver:
    """Takes batches from the scheduler and executes them on the instance, one at a time;
    ``execute`` is only ever called from this thread."""

    def __init__(self, instance: abi.Instance, index: int, name: str, scheduler: Scheduler,
                 completion: Completion,
                 gate: tuple[RateLimiter, LimitedInstance] | None = None) -> None:
        self.instance = instance
        self.gate = gate  # the rate limiter and this instance's place there (--rate-limit)
        self.index = index  # the scheduler's worker number (sequences bind to one)
        self.scheduler = scheduler
        self.completion = completion
        self.thread = threading.Thread(target=self._run, name=f"triton-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        pass  # the scheduler wakes the thread blocked in take()

    def stop(self, deadline: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        take, run, instance, idx = self.scheduler.take, self.completion.run, self.instance, self.index
        gate = self.gate
        while True:
            items = take(idx)
            if items is None:
                return
            if not items:
                continue
            if gate is None:
                run(instance, items)
                continue
            limiter, limit = gate
            limiter.acquire(limit)  # waits for this instance's resources and turn
            try:
                run(instance, items)
            finally:
                limiter.release(limit)
