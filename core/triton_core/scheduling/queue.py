"""Queues requests for a model version's instances and forms batches (the dynamic batcher).

Two schedulers (scheduler.Scheduler; scheduler.make_scheduler picks one):

``FifoQueue``: without a scheduler in the config each request runs alone: a
C-level SimpleQueue hands requests to the instance workers (its blocking get
wakes a thread faster than a Condition does; measured).

``DynamicBatcher``: with ``dynamic_batching`` (Triton's semantics):

- Requests wait in one queue per priority level (1 is the highest; a request's
  priority 0 or above ``priority_levels`` means ``default_priority_level``),
  oldest first within a level.
- A free instance takes the oldest request of the highest non-empty level and
  adds queued requests whose non-batch shapes match (inputs marked
  ``allow_ragged_batch`` do not count), in priority order, up to the largest
  preferred batch size it can reach, else up to max_batch_size. It waits up to
  ``max_queue_delay_microseconds`` for more when neither is reached.
- Queue policies (``default_queue_policy``, ``priority_queue_policy``):
  ``max_queue_size`` (a full level refuses new requests: UNAVAILABLE
  "Exceeds maximum queue size"; requests of a batch waiting for the queue delay
  still count, as in Triton), ``default_timeout_microseconds`` and
  ``allow_timeout_override`` (a request's own ``timeout`` may shorten it),
  ``timeout_action`` REJECT (the request fails with UNAVAILABLE "Request
  timeout expired") or DELAY (it moves behind every not-timed-out request).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..config import ModelConfig
from ..config.model_config import QueuePolicy
from ..errors import TritonError
from ..request import InferenceRequest
from .clock import MONOTONIC, Clock

TIMEOUT_MESSAGE = "Request timeout expired"
QUEUE_FULL_MESSAGE = "Exceeds maximum queue size"


class _Item:
    __slots__ = ("request", "batch_size", "enqueue_ns", "key", "deadline_ns", "seq", "level")

    def __init__(self, request: InferenceRequest, batch_size: int, key: tuple,
                 enqueue_ns: int) -> None:
        self.request = request
        self.batch_size = batch_size
        self.enqueue_ns = enqueue_ns
        self.key = key
        self.deadline_ns = 0
        self.seq = None  # the sequence of a sequence-batched request
        self.level = 0


def shape_key(req: InferenceRequest, batching: bool, ragged: frozenset[str] = frozenset()) -> tuple:
    """Requests batch together only when every non-batch shape matches (ragged inputs aside)."""
    if not batching:
        return ()
    return tuple(sorted((n, t.shape[1:]) for n, t in req.inputs.items() if n not in ragged))


class _Level:
    """One priority level: its policy, its queue and its delayed (timed-out, DELAY) queue."""

    __slots__ = ("items", "delayed", "forming", "timeout_ns", "override", "delay_action",
                 "max_size")

    def __init__(self, policy: QueuePolicy | None) -> None:
        p = policy or QueuePolicy()
        self.items: collections.deque[_Item] = collections.deque()
        self.delayed: collections.deque[_Item] = collections.deque()
        # requests of a batch still forming (waiting for the queue delay): they count
        # towards max_queue_size as in Triton, whose pending batch stays in its queue
        self.forming = 0
        self.timeout_ns = int(p.default_timeout_microseconds) * 1000
        self.override = bool(p.allow_timeout_override)
        self.delay_action = str(p.timeout_action).upper() == "DELAY"
        self.max_size = int(p.max_queue_size)

    def __len__(self) -> int:
        return len(self.items) + len(self.delayed) + self.forming


Rejecter = Callable[[_Item, TritonError], None]


class _Queue:
    """What both queues share: the model's name, the clock and the timeout rejection."""

    # Capabilities (scheduler.Scheduler): neither queue keeps per-request state.
    stateful = False

    def __init__(self, config: ModelConfig, workers: int, on_reject: Rejecter | None,
                 clock: Clock) -> None:
        self.clock = clock
        self._workers = workers
        self._closed = False
        self.on_reject = on_reject
        self.name = config.name

    def prepare(self, items: Sequence[_Item]) -> list[InferenceRequest]:
        return [it.request for it in items]

    def done(self, items: Sequence[_Item], responses: Sequence[Any]) -> list[Any]:
        return list(responses)

    def _reject(self, items: list[_Item]) -> None:
        if self.on_reject is None:
            return
        err = TritonError.unavailable(TIMEOUT_MESSAGE)
        for it in items:
            self.on_reject(it, err)


class FifoQueue(_Queue):
    """No scheduler in the config: each request runs alone, oldest first.

    A C-level SimpleQueue hands requests to the instance threads. Besides the
    Scheduler methods it serves the loop driver: ``take_nowait`` (the next
    request, without waiting).
    """

    batching = False
    preserve_ordering = False

    def __init__(self, config: ModelConfig, workers: int = 1,
                 on_reject: Rejecter | None = None, clock: Clock = MONOTONIC) -> None:
        super().__init__(config, workers, on_reject, clock)
        self._simple: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()

    @property
    def fifo(self) -> FifoQueue:
        return self

    def __len__(self) -> int:
        return self._simple.qsize()

    def put(self, req: InferenceRequest, batch_size: int) -> _Item:
        item = _Item(req, batch_size, (), self.clock.now_ns())
        if req.timeout_us:
            item.deadline_ns = item.enqueue_ns + req.timeout_us * 1000
        self._simple.put(item)
        return item

    def remove(self, req: InferenceRequest) -> _Item | None:
        """A queued request stays (it is dropped when taken: cancelled)."""
        return None

    def close(self) -> None:
        self._closed = True
        for _ in range(self._workers):
            self._simple.put(None)

    def drain(self) -> list[_Item]:
        items: list[_Item] = []
        while True:
            try:
                it = self._simple.get_nowait()
            except queue.Empty:
                break
            if it is not None:
                items.append(it)
        if self._closed:
            self._simple.put(None)  # keep the end marker for workers still waiting
        return items

    def take(self, worker: int = 0) -> list[_Item] | None:
        """Block for the next request; None once closed."""
        while True:
            it = self._simple.get()
            if it is None:
                self._simple.put(None)  # let the other workers see the end too
                return None
            if it.deadline_ns and self.clock.now_ns() > it.deadline_ns:
                self._reject([it])
                continue
            return [it]

    def take_nowait(self) -> list[_Item] | None:
        """The next request if one is queued now, else None."""
        while True:
            try:
                it = self._simple.get_nowait()
            except queue.Empty:
                return None
            if it is None:
                self._simple.put(None)  # closing: leave the end marker for take()
                return None
            if it.deadline_ns and self.clock.now_ns() > it.deadline_ns:
                self._reject([it])
                continue
            return [it]


class DynamicBatcher(_Queue):
    """``dynamic_batching``: priority levels, queue policies and batches (module docstring)."""

    fifo: FifoQueue | None = None

    def __init__(self, config: ModelConfig, workers: int = 1,
                 on_reject: Rejecter | None = None, clock: Clock = MONOTONIC) -> None:
        super().__init__(config, workers, on_reject, clock)
        self._cv = threading.Condition(threading.Lock())
        db = config.dynamic_batching
        assert db is not None, "DynamicBatcher needs dynamic_batching"
        self.batching = config.max_batch_size > 0
        self.max_batch = config.max_batch_size if self.batching else 1
        self.preferred = sorted(db.preferred_batch_size) if self.batching else []
        self.delay_ns = int(db.max_queue_delay_microseconds) * 1000 if self.batching else 0
        self.preserve_ordering = bool(db.preserve_ordering)
        self.ragged = frozenset(i.name for i in config.input if i.allow_ragged_batch)
        nlevels = int(db.priority_levels)
        self.nlevels = max(1, nlevels)
        default_level = int(db.default_priority_level) if nlevels else 0
        self.default_level = default_level if 1 <= default_level <= self.nlevels else 1
        self.levels: list[_Level] = []
        for lvl in range(1, self.nlevels + 1):
            pol = db.priority_queue_policy.get(str(lvl)) or db.default_queue_policy
            self.levels.append(_Level(pol))
        self._timed = 0  # queued items with a deadline (skip the sweep when none)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    # producers ---------------------------------------------------------------
    def level_of(self, req: InferenceRequest) -> int:
        p = req.priority
        return p if 1 <= p <= self.nlevels else self.default_level

    def put(self, req: InferenceRequest, batch_size: int) -> _Item:
        """Queue a request; raises TritonError (UNAVAILABLE) when its level is full."""
        item = _Item(req, batch_size, shape_key(req, self.batching, self.ragged),
                     self.clock.now_ns())
        lvl = self.level_of(req)
        level = self.levels[lvl - 1]
        item.level = lvl
        timeout_ns = level.timeout_ns
        if level.override and req.timeout_us:
            t = req.timeout_us * 1000
            if timeout_ns == 0 or t < timeout_ns:
                timeout_ns = t
        if timeout_ns:
            item.deadline_ns = item.enqueue_ns + timeout_ns
        with self._cv:
            if self._closed:
                raise TritonError.unavailable(f"model '{self.name}' is unloading")
            if level.max_size and len(level) >= level.max_size:
                raise TritonError.unavailable(QUEUE_FULL_MESSAGE)
            level.items.append(item)
            self._count += 1
            if item.deadline_ns:
                self._timed += 1
            self._cv.notify()
        return item

    def remove(self, req: InferenceRequest) -> _Item | None:
        """Take a still-queued request out (cancellation); None when not queued here."""
        with self._cv:
            for level in self.levels:
                for dq in (level.items, level.delayed):
                    for it in dq:
                        if it.request is req:
                            dq.remove(it)
                            self._count -= 1
                            if it.deadline_ns:
                                self._timed -= 1
                            return it
        return None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def drain(self) -> list[_Item]:
        items: list[_Item] = []
        with self._cv:
            for level in self.levels:
                items.extend(level.items)
                items.extend(level.delayed)
                level.items.clear()
                level.delayed.clear()
            self._count = 0
            self._timed = 0
        return items

    # consumers ---------------------------------------------------------------
    def take(self, worker: int = 0) -> list[_Item] | None:
        """Block for the next batch; None once closed and empty."""
        rejected: list[_Item] = []
        try:
            with self._cv:
                return self._take_locked(rejected)
        finally:
            if rejected:
                self._reject(rejected)

    def _sweep(self, now: int, rejected: list[_Item]) -> None:
        """Apply each level's timeout action to requests whose timeout passed."""
        for level in self.levels:
            if not level.items:
                continue
            keep: list[_Item] = []
            moved = False
            for it in level.items:
                if it.deadline_ns and now > it.deadline_ns:
                    moved = True
                    self._timed -= 1
                    it.deadline_ns = 0
                    if level.delay_action:
                        level.delayed.append(it)
                    else:
                        self._count -= 1
                        rejected.append(it)
                else:
                    keep.append(it)
            if moved:
                level.items.clear()
                level.items.extend(keep)

    def _head(self) -> _Item | None:
        for level in self.levels:
            if level.items:
                return level.items.popleft()
        for level in self.levels:
            if level.delayed:
                return level.delayed.popleft()
        return None

    def _take_locked(self, rejected: list[_Item]) -> list[_Item] | None:
        while True:
            if self._timed:
                self._sweep(self.clock.now_ns(), rejected)
                if rejected:
                    return []  # let the worker fail them now, then come back
            if self._count:
                break
            if self._closed:
                return None
            self.clock.wait(self._cv, None)
        first = self._head()
        assert first is not None
        self._count -= 1
        if first.deadline_ns:
            self._timed -= 1
        batch = [first]
        if not self.batching:
            return batch
        total = first.batch_size
        deadline = first.enqueue_ns + self.delay_ns
        while True:
            total = self._fill(batch, total)
            if total >= self.max_batch or (self.preferred and total in self.preferred):
                break
            remaining = (deadline - self.clock.now_ns()) / 1e9
            if remaining <= 0 or self._closed:
                break
            self._count_forming(batch, 1)
            try:
                self.clock.wait(self._cv, remaining)
            finally:
                self._count_forming(batch, -1)
        if self._count:
            self._cv.notify()  # another idle instance can take the rest
        return batch

    def _count_forming(self, batch: list[_Item], sign: int) -> None:
        for it in batch:
            if it.level:
                self.levels[it.level - 1].forming += sign

    def _candidates(self):
        for level in self.levels:
            yield level.items
        for level in self.levels:
            yield level.delayed

    def _fill(self, batch: list[_Item], total: int) -> int:
        if not self._count:
            return total
        key = batch[0].key
        target = self.max_batch
        if self.preferred:
            # The largest preferred size reachable with what is queued, else max.
            queued = total
            for dq in self._candidates():
                for i in dq:
                    if i.key == key:
                        queued += i.batch_size
            fits = [p for p in self.preferred if p <= min(queued, self.max_batch)]
            if fits and queued < self.max_batch:
                target = fits[-1]
        for dq in self._candidates():
            if total >= target:
                break
            if not dq:
                continue
            kept: list[_Item] = []
            while dq and total < target:
                it = dq.popleft()
                if it.key == key and total + it.batch_size <= target:
                    batch.append(it)
                    total += it.batch_size
                    self._count -= 1
                    if it.deadline_ns:
                        self._timed -= 1
                else:
                    kept.append(it)
            dq.extendleft(reversed(kept))
        return total
