"""Executes awaited on the event loop: while requests keep arriving, the loop sends them
to an instance (begin_execute) and reads the answers when the instance's descriptor turns
readable, with no thread in between.

For pipelined models (an instance that waits on another process and accepts a second
request while it runs one: the python backend) whose executes say which descriptor to
watch (``PendingExecute.fileno()``). The loop owns an instance (holds its lock) for a
busy period: up to ``pipeline_depth`` executes outstanding, later requests wait in a
backlog here. Anything unusual goes to a thread, which waits the way the instance
thread does (timeouts, a dead worker): a descriptor readable with no result, an execute
older than the policy's loop_patience_s, or one without a descriptor. Everything here runs on the loop's
thread, except the drain of a handed-off instance.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .. import abi
from ..errors import ErrorCode, TritonError
from .clock import Clock
from .inflight import InFlight
from .policy import FastPathPolicy
from .queue import TIMEOUT_MESSAGE, FifoQueue, _Item
from .stats import ModelStats

if TYPE_CHECKING:
    from ..request import InferenceRequest, InferenceResponse
    from .scheduler import Scheduler

class _Owned:
    """One instance the loop holds, with its executes in the order they were sent."""

    __slots__ = ("idx", "instance", "lock", "out", "fd", "watchdog")

    def __init__(self, idx: int, instance: abi.Instance, lock: threading.Lock) -> None:
        self.idx = idx
        self.instance = instance
        self.lock = lock
        self.out: collections.deque[tuple] = collections.deque()
        self.fd = -1
        self.watchdog: asyncio.TimerHandle | None = None


class PipelinedVersion(Protocol):
    """What the pipeline needs of the loaded version it runs (models/version.py's
    LoadedVersion): its instances with their locks, its scheduler, and the steps of one
    execute (begin, responses, conclude) and of a failure."""

    name: str
    queue: Scheduler
    instances: list[abi.Instance]
    instance_locks: list[threading.Lock]
    lock_waiting: list[bool]
    accepting: bool
    inflight: InFlight
    stats: ModelStats
    clock: Clock
    policy: FastPathPolicy

    def _begin(self, instance: abi.Instance, items: Sequence[_Item]) -> tuple | None: ...

    def _responses(self, run: Callable[[], list[InferenceResponse] | None],
                   batch: list[InferenceRequest]) -> list[InferenceResponse]: ...

    def _conclude(self, live: list[_Item], requests: list[InferenceRequest],
                  timer: abi.ExecuteTimer, responses: list[InferenceResponse]) -> None: ...

    def _on_reject(self, item: _Item, error: TritonError) -> None: ...

    def _finish(self, req: InferenceRequest, error: TritonError, reason: str) -> None: ...


class LoopPipeline:
    def __init__(self, version: PipelinedVersion, loop: asyncio.AbstractEventLoop,
                 fifo: FifoQueue) -> None:
        self.version = version
        self.loop = loop
        self.fifo = fifo  # the version's queue: the backlog goes back there
        # An execute still unanswered after this long goes to a thread: it may be slow or
        # hung, and the backend's own timeout handling needs a blocking wait.
        self.patience_s = version.policy.loop_patience_s
        self.thread_id = threading.get_ident()
        self.depth = min(getattr(i, "pipeline_depth", 1) for i in version.instances)
        self.owned: list[_Owned] = []
        self.backlog: collections.deque[_Item] = collections.deque()

    # entry ----------------------------------------------------------------------------
    def offer(self, req: InferenceRequest, batch_size: int) -> bool:
        """Take ``req`` (True: its callback gets the response) or leave it to the caller
        to submit() (False: every instance is busy on its thread)."""
        v = self.version
        if not v.accepting or self._threads_waiting():
            return False  # join the threads' queue: the loop gives its instances back
        own = next((o for o in self.owned if len(o.out) < self.depth), None)
        if own is None and len(self.owned) < len(v.instance_locks) and len(v.queue) == 0:
            own = self._acquire()
        if own is None and not self.owned:
            return False
        item = _Item(req, batch_size, (), v.clock.now_ns())
        if req.timeout_us:
            item.deadline_ns = item.enqueue_ns + req.timeout_us * 1000
        v.inflight.enter()
        if own is None:
            self.backlog.append(item)
        else:
            self._send(own, item)
            if not own.out and own in self.owned:  # cancelled or failed at once
                self._release(own)
        return True

    def cancel(self, req: InferenceRequest) -> None:
        """Fail ``req`` now if it waits in the backlog."""
        if threading.get_ident() != self.thread_id:
            return  # only the loop touches the backlog; a cancelled request is dropped at send
        for it in self.backlog:
            if it.request is req:
                self.backlog.remove(it)
                self.version._finish(req, TritonError(ErrorCode.CANCELLED, "request cancelled"),  # noqa: SLF001
                                     "CANCELED")
                return

    def _threads_waiting(self) -> bool:
        """Requests wait in the instance threads' queue, or a thread holds one for an
        instance the loop owns: the loop must stop sending so they are not starved."""
        v = self.version
        return len(v.queue) > 0 or any(v.lock_waiting)

    # ownership --------------------------------------------------------------------------
    def _acquire(self) -> _Owned | None:
        v = self.version
        held = {o.idx for o in self.owned}
        for idx, lock in enumerate(v.instance_locks):
            if idx not in held and lock.acquire(blocking=False):
                own = _Owned(idx, v.instances[idx], lock)
                self.owned.append(own)
                own.watchdog = self.loop.call_later(self.patience_s, self._watch, own)
                return own
        return None

    def _release(self, own: _Owned) -> None:
        self._forget(own)
        own.lock.release()
        if not self.owned:
            self._backlog_to_queue()

    def _forget(self, own: _Owned) -> None:
        self.owned.remove(own)
        if own.watchdog is not None:
            own.watchdog.cancel()
            own.watchdog = None
        if own.fd >= 0:
            fd, own.fd = own.fd, -1
            try:
                self.loop.remove_reader(fd)
            except (OSError, RuntimeError, ValueError):
                pass  # closed meanwhile (worker restart), its number maybe reused: not ours

    def _backlog_to_queue(self) -> None:
        """Requests still waiting go to the instance threads."""
        q = self.fifo
        while self.backlog:
            q.requeue(self.backlog.popleft())

    # sending and answering --------------------------------------------------------------
    def _send(self, own: _Owned, item: _Item) -> None:
        v = self.version
        got = v._begin(own.instance, [item])  # noqa: SLF001
        if got is None:
            return  # cancelled: already answered
        pending = got[3]
        if pending is None:  # begin_execute raised: the batch fails now
            v._conclude(got[0], got[1], got[2], got[4])  # noqa: SLF001
            return
        fileno = getattr(pending, "fileno", None)
        fd = fileno() if fileno is not None else None
        own.out.append(got)
        if fd is None or fd < 0 or (own.fd >= 0 and fd != own.fd):
            self._hand_off(own)  # nothing to watch (or a new worker): a thread waits
            return
        if own.fd < 0:
            try:
                self.loop.add_reader(fd, self._on_readable, own)
            except (OSError, RuntimeError, ValueError):
                self._hand_off(own)  # not watchable (closed meanwhile): a thread waits
                return
            own.fd = fd

    def _on_readable(self, own: _Owned) -> None:
        v = self.version
        answered = False
        while own.out and own.out[0][3].wait(0):
            live, requests, timer, pending, _ = own.out.popleft()
            responses = v._responses(pending.result, requests)  # noqa: SLF001
            timer.exec_end_ns = time.monotonic_ns()
            answered = True
            self._refill(own)  # the next one is on its way before this one is delivered
            if not own.out and own in self.owned:
                self._release(own)
            v._conclude(live, requests, timer, responses)  # noqa: SLF001
        if not answered and own.out and own in self.owned:
            self._hand_off(own)  # readable without a result: closed, a thread finds out

    def _refill(self, own: _Owned) -> None:
        v = self.version
        while len(own.out) < self.depth and self.backlog and own in self.owned:
            if self._threads_waiting():  # let the threads have the instances
                self._backlog_to_queue()
                return
            item = self.backlog.popleft()
            if item.deadline_ns and v.clock.now_ns() > item.deadline_ns:
                v._on_reject(item, TritonError.unavailable(TIMEOUT_MESSAGE))  # noqa: SLF001
                continue
            self._send(own, item)

    def _watch(self, own: _Owned) -> None:
        if own not in self.owned:
            return
        if own.out and time.monotonic_ns() - own.out[0][2].exec_start_ns > self.patience_s * 1e9:
            self._hand_off(own)
            return
        own.watchdog = self.loop.call_later(self.patience_s, self._watch, own)

    def _hand_off(self, own: _Owned) -> None:
        """A thread takes the instance's outstanding executes, then releases it."""
        self._forget(own)
        if not self.owned:
            self._backlog_to_queue()
        started = list(own.out)
        own.out.clear()
        threading.Thread(target=self._drain, args=(own.lock, started),
                         name=f"triton-{self.version.name}-wait", daemon=True).start()

    def _drain(self, lock: threading.Lock, started: list[tuple]) -> None:
        v = self.version
        try:
            for live, requests, timer, pending, responses in started:
                if pending is not None:
                    responses = v._responses(pending.result, requests)  # noqa: SLF001
                timer.exec_end_ns = time.monotonic_ns()
                v._conclude(live, requests, timer, responses)  # noqa: SLF001
        finally:
            lock.release()
