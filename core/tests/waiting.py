"""Waiting for a condition in tests: poll it until true, failing past a deadline generous
enough for a loaded CI machine (a passing test never waits for the deadline)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], what: str = "condition", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.002)
