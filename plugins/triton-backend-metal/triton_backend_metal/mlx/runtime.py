"""The one thread of this process that runs MLX.

Since MLX 0.31.2 a stream belongs to the thread that created it, and an imported
function's operations are bound to the stream recorded in the .mlxfn file (or to
the process's first stream when that one does not exist here). Running every MLX
call of the process on one long-lived thread, the first to use MLX, keeps those
streams usable: imports, calls and evaluation all happen where the streams live.
The thread also serializes MLX work, which MLX asks of callers sharing a stream.

The thread is process-wide state (like MLX's own): it lives until the process exits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_thread_ident: int | None = None


def _claim_thread() -> None:
    global _thread_ident
    _thread_ident = threading.get_ident()
    import mlx.core as mx

    # Create this thread's default streams first, so that they take the lowest indices, in
    # the order a fresh exporting process creates them (its default device first): a file
    # exported there names those indices.
    first = mx.default_device()
    for device in (first, mx.cpu, mx.gpu):
        if mx.is_available(device):
            mx.default_stream(device)


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="triton-mlx", initializer=_claim_thread
            )
        return _executor


def submit(fn: Callable[..., T], *args: object) -> Future[T]:
    """Run ``fn(*args)`` on the MLX thread."""
    return _get_executor().submit(fn, *args)


def run(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on the MLX thread and return its result (or raise its exception)."""
    if threading.get_ident() == _thread_ident:
        return fn(*args)
    return submit(fn, *args).result()
