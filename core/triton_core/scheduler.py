"""Queues requests for a model version's instances and forms batches.

Without a scheduler in the config each request runs alone. With
``dynamic_batching`` an instance that becomes free takes the oldest request
and adds queued requests whose non-batch shapes match, up to the preferred or
maximum batch size, waiting at most max_queue_delay_microseconds for more.
(Priority levels and queue policies belong to the full batcher.)
"""

from __future__ import annotations

import collections
import queue
import threading
import time

from .config import ModelConfig
from .request import InferenceRequest


class _Item:
    __slots__ = ("request", "batch_size", "enqueue_ns", "key")

    def __init__(self, request: InferenceRequest, batch_size: int, key: tuple) -> None:
        self.request = request
        self.batch_size = batch_size
        self.enqueue_ns = time.monotonic_ns()
        self.key = key


def shape_key(req: InferenceRequest, batching: bool) -> tuple:
    """Requests batch together only when every non-batch shape matches."""
    if not batching:
        return ()
    return tuple(sorted((n, t.shape[1:]) for n, t in req.inputs.items()))


class RequestQueue:
    """A FIFO shared by the instances of one model version."""

    def __init__(self, config: ModelConfig, workers: int = 1) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        # Without batching a C-level SimpleQueue hands requests to workers: its
        # blocking get wakes a thread faster than a Condition does (measured).
        self._simple: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._workers = workers
        self._cv = threading.Condition(threading.Lock())
        self._closed = False
        db = config.dynamic_batching
        self.batching = db is not None and config.max_batch_size > 0
        self.max_batch = config.max_batch_size if self.batching else 1
        self.preferred = sorted(db.preferred_batch_size) if db and self.batching else []
        self.delay_s = (db.max_queue_delay_microseconds / 1e6) if db and self.batching else 0.0

    def __len__(self) -> int:
        return len(self._items) if self.batching else self._simple.qsize()

    def put(self, req: InferenceRequest, batch_size: int) -> None:
        item = _Item(req, batch_size, shape_key(req, self.batching))
        if not self.batching:
            self._simple.put(item)
            return
        with self._cv:
            self._items.append(item)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for _ in range(self._workers):
            self._simple.put(None)

    def drain(self) -> list[_Item]:
        with self._cv:
            items = list(self._items)
            self._items.clear()
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

    def take(self) -> list[_Item] | None:
        """Block for the next batch; None once closed and empty."""
        if not self.batching:
            it = self._simple.get()
            if it is None:
                self._simple.put(None)  # let the other workers see the end too
                return None
            return [it]
        with self._cv:
            while not self._items:
                if self._closed:
                    return None
                self._cv.wait()
            first = self._items.popleft()
            if not self.batching:
                return [first]
            batch = [first]
            total = first.batch_size
            deadline = time.monotonic() + self.delay_s
            while True:
                total = self._fill(batch, total)
                if total >= self.max_batch or (self.preferred and total in self.preferred):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cv.wait(remaining)
            if self._items:
                self._cv.notify()  # another idle instance can take the rest
            return batch

    def _fill(self, batch: list[_Item], total: int) -> int:
        key = batch[0].key
        target = self.max_batch
        if self.preferred:
            # The largest preferred size reachable with what is queued, else max.
            queued = total + sum(i.batch_size for i in self._items if i.key == key)
            fits = [p for p in self.preferred if p <= min(queued, self.max_batch)]
            if fits and queued < self.max_batch:
                target = fits[-1]
        kept: list[_Item] = []
        while self._items and total < target:
            it = self._items.popleft()
            if it.key == key and total + it.batch_size <= target:
                batch.append(it)
                total += it.batch_size
            else:
                kept.append(it)
        self._items.extendleft(reversed(kept))
        return total
