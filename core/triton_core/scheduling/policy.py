"""When the core runs a request on the event loop rather than handing it to the instance's
thread: the tuning of the fast paths (docs/abi.md, "Fast path"), in one place.

Every value was measured on 2-core machines (bench/README.md); none is part of the backend
contract, and a Server takes another policy (``Server(policy=...)``), as tests do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FastPathPolicy:
    # Inline: run the request on the loop when the instance is idle and the model is fast.
    inline_max_exec_ns: int = 200_000  # the model's average execute (EWMA) must be under this
    inline_warmup: int = 8  # executions before that average counts
    inline_max_input_bytes: int = 64 * 1024  # a larger request is never run inline
    inline_wait_s: float = 0.001  # a begin_execute result awaited on the loop this long
    # Loop pipeline (process-backed instances with a descriptor, under load).
    loop_max_exec_ns: int = 5_000_000  # only for models faster than this on average
    loop_patience_s: float = 0.02  # an execute unanswered this long is left to a thread
    # Loop load (scheduling/load.py): probe windows measure how busy the loop is.
    probe_window_s: float = 0.01
    inline_windows: int = 9  # unsaturated: one probe window after this many inline ones
    saturated_at: float = 0.8  # loop CPU / wall time in a probe window: saturated from here
    saturated_until: float = 0.6  # ... until it falls under this


DEFAULT_POLICY = FastPathPolicy()
