"""LoopLoad: probe windows measure the loop's load; a saturated loop keeps pipelining."""

from __future__ import annotations

import threading

import pytest

from triton_core import abi
from triton_core.scheduling import load as loop_load
from triton_core.scheduling.load import LoopLoad


class Clock:
    """perf_counter and thread_time under the test's control."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0

    def run(self, wall: float, busy: float) -> None:
        """Let ``wall`` seconds pass with the loop thread busy ``busy`` of them."""
        self.wall += wall
        self.cpu += wall * busy


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(loop_load, "_clock", lambda: c.wall)
    monkeypatch.setattr(loop_load, "_cpu_clock", lambda: c.cpu)
    yield c
    abi.set_server_saturated(False)


def windows(load: LoopLoad, clock: Clock, n: int, busy: float) -> list[bool]:
    """Run n windows at ``busy`` load, ticking mid-window too; the probing flags seen."""
    seen = []
    for _ in range(n):
        load.tick()
        seen.append(load.probing)
        clock.run(0.004, busy)
        load.tick()  # within the window: changes nothing
        assert load.probing == seen[-1]
        clock.run(0.007, busy)
    return seen


def test_an_idle_loop_probes_one_window_in_ten(clock):
    load = LoopLoad()
    seen = windows(load, clock, 30, busy=0.3)
    assert seen[0] is True  # the first window measures
    assert seen == ([True] + [False] * 9) * 3
    assert not load.saturated and not abi.server_saturated()


def test_a_busy_loop_is_saturated_and_keeps_probing(clock):
    load = LoopLoad()
    seen = windows(load, clock, 3, busy=0.95)
    assert seen == [True, True, True]
    assert load.saturated and abi.server_saturated()


def test_saturation_has_hysteresis(clock):
    load = LoopLoad()
    windows(load, clock, 2, busy=0.95)
    windows(load, clock, 3, busy=0.7)  # between SATURATED_UNTIL and SATURATED_AT
    assert load.saturated
    windows(load, clock, 2, busy=0.3)
    assert not load.saturated and not abi.server_saturated()
    # unsaturated, 0.7 is not enough to become saturated again
    windows(load, clock, 25, busy=0.7)
    assert not load.saturated


def test_a_window_started_on_another_thread_is_not_measured(clock):
    load = LoopLoad()
    t = threading.Thread(target=load.tick)
    t.start()
    t.join()
    assert load.probing
    clock.run(0.02, 1.0)  # what thread_time says here is another thread's clock
    load.tick()
    assert not load.saturated


def test_reset_clears_saturation(clock):
    load = LoopLoad()
    windows(load, clock, 2, busy=1.0)
    assert abi.server_saturated()
    load.reset()
    assert not load.saturated and not load.probing and not abi.server_saturated()


def test_the_abi_exports_the_signal():
    assert abi.ABI_VERSION >= (1, 3)
    abi.set_server_saturated(True)
    try:
        assert abi.server_saturated()
    finally:
        abi.set_server_saturated(False)
