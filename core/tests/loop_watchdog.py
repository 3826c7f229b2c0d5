"""A pytest plugin (``-p loop_watchdog`` in pyproject's addopts): fails a test during which
an asyncio event loop stalled.

Every loop the tests create (asyncio.run, new_event_loop: the front ends' loops in the test
helpers) gets a ticker that expects to run every TICK_S; a tick that comes more than
TRITON_LOOP_LAG_MS late (default 1000) means something held the loop: a blocking call in a
callback, a lock, a round trip to another process. The threshold is far above a scheduling
hiccup of a loaded CI machine and far below the stalls it exists for (seconds).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

TICK_S = 0.005
# fsspec's own loop thread: the object-store tests' in-process S3 fake (moto) answers inside
# that loop's calls, so it blocks by design; it is not a loop of ours.
FOREIGN_THREADS = frozenset({"fsspecIO"})
LAG_S = float(os.environ.get("TRITON_LOOP_LAG_MS", "1000")) / 1000.0

_stalls: list[str] = []
_lock = threading.Lock()


def _watch(loop: asyncio.AbstractEventLoop) -> None:
    state = {"due": 0.0}

    def tick() -> None:
        now = time.monotonic()
        due = state["due"]
        if due and now - due > LAG_S and threading.current_thread().name not in FOREIGN_THREADS:
            with _lock:
                _stalls.append(f"an event loop stalled {(now - due) * 1000:.0f} ms "
                               f"(thread {threading.current_thread().name})")
        state["due"] = now + TICK_S
        if not loop.is_closed():
            loop.call_later(TICK_S, tick)

    run_forever = loop.run_forever

    def watched_run_forever() -> None:
        state["due"] = 0.0  # a loop stopped and run again was not stalled meanwhile
        return run_forever()

    loop.run_forever = watched_run_forever  # type: ignore[method-assign]
    loop.call_soon(tick)


class _WatchedPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        _watch(loop)
        return loop


def pytest_configure(config: pytest.Config) -> None:
    if LAG_S > 0:
        asyncio.set_event_loop_policy(_WatchedPolicy())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _lock:
        _stalls.clear()
    outcome = yield
    with _lock:
        stalls = list(_stalls)
        _stalls.clear()
    if stalls and outcome.excinfo is None:
        raise AssertionError(f"{stalls[0]} during {item.nodeid} (threshold "
                             f"{LAG_S * 1000:.0f} ms, TRITON_LOOP_LAG_MS); "
                             f"{len(stalls)} stall(s) in all")
