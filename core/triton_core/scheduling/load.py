"""How loaded the event loop thread is, for choosing between waiting inline and pipelining.

Waiting for a worker process on the loop (inline) is the fastest path for one
client, and the slowest for many: the loop can do nothing else meanwhile, and a
worker spinning for its next request takes the core the loop needs. Whether
more requests are coming cannot always be seen (grpc.aio accepts one call per
loop iteration, so an inline wait hides the calls queued in gRPC's core), and
the loop's CPU use during inline waits says nothing either: it waits as long for
one client as for ten. So the load is measured in probe windows, where requests
of pipelined models are not waited for inline: then the loop's CPU time over wall
time is its real load. A saturated loop keeps pipelining (every window is a probe)
and asks backends not to spin for work.
"""

from __future__ import annotations

import threading
import time

from .. import abi
from .policy import DEFAULT_POLICY, FastPathPolicy

_clock = time.perf_counter
_cpu_clock = time.thread_time


class LoopLoad:
    """Call tick() on the loop thread for every request; read probing / saturated."""

    __slots__ = ("probing", "saturated", "policy", "_end", "_cpu0", "_wall0", "_inline_left",
                 "_thread")

    def __init__(self, policy: FastPathPolicy = DEFAULT_POLICY) -> None:
        # A loop busy policy.saturated_at (CPU / wall time in a probe window) is the
        # bottleneck; it stays so until under policy.saturated_until (one noisy window
        # must not flip it). Unsaturated, one window in policy.inline_windows + 1 probes.
        self.policy = policy
        self.probing = False  # this window pipelines every pipelined model's request
        self.saturated = False  # the last probe window found the loop this busy
        self._end = 0.0
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._inline_left = 0
        self._thread = 0  # thread_time() is per thread: a window is one thread's

    def tick(self) -> None:
        now = _clock()
        if now < self._end:
            return
        cpu = _cpu_clock()
        thread = threading.get_ident()
        if self.probing and now > self._wall0 and thread == self._thread:
            busy = (cpu - self._cpu0) / (now - self._wall0)
            p = self.policy
            self._set_saturated(busy >= (p.saturated_until if self.saturated else p.saturated_at))
        if self.saturated or self._inline_left <= 0:
            self.probing = True
            self._inline_left = self.policy.inline_windows
        else:
            self.probing = False
            self._inline_left -= 1
        self._wall0, self._cpu0, self._end, self._thread = now, cpu, now + self.policy.probe_window_s, thread

    def _set_saturated(self, value: bool) -> None:
        self.saturated = value
        abi.set_server_saturated(value)

    def reset(self) -> None:
        """The loop stopped (server shut down): nothing is saturated any more."""
        self._set_saturated(False)
        self.probing = False
        self._end = 0.0
