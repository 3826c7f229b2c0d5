"""The loop driver: the event loop runs a process-backed instance (scheduling/driver.py).

For an instance whose executes wait on another process and say which descriptor turns
readable when a result is there (``Instance.begin_execute``, ``PendingExecute.fileno()``:
the python backend), under the plain FIFO scheduler. On the engine loop
(scheduling/engine_loop.py) the driver takes requests from the FIFO, sends each with
``begin_execute`` (up to ``pipeline_depth`` outstanding: the next request is already at
the instance while it runs one) and concludes each when the descriptor turns readable,
sending the next one before delivering the answer.

All of the driver's state belongs to the loop. What the loop must not wait for goes to a
rescue thread, which waits the way the thread driver does (the backend's execute
timeout, a dead worker's restart) and gives the instance back to the loop: a descriptor
readable with no result (the peer closed), an execute unanswered after the policy's
``loop_patience_s``, an execute without a descriptor.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

from .. import abi
from .completion import Completion, Started
from .engine_loop import EngineLoop
from .policy import DriverPolicy
from .queue import FifoQueue
from .rate_limiter import LimitedInstance, RateLimiter

log = logging.getLogger("triton_core")


class LoopDriver:
    def __init__(self, instance: abi.Instance, name: str, fifo: FifoQueue, completion: Completion,
                 engine: EngineLoop, policy: DriverPolicy,
                 gate: tuple[RateLimiter, LimitedInstance] | None = None) -> None:
        self.instance = instance
        self.name = name
        self.fifo = fifo
        self.completion = completion
        self.engine = engine
        self.patience_s = policy.loop_patience_s
        # --rate-limit: one execution at a time, each holding the instance's resources
        self.gate = gate
        self._granted = False  # the rate limiter gave this driver its resources
        self._awaiting = False  # ... or will call it back when it does
        self.depth = 1 if gate else max(1, int(getattr(instance, "pipeline_depth", 1)))
        self.out: collections.deque[Started] = collections.deque()  # in the order sent
        self.away = False  # a rescue thread holds the instance
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self._generation = -1
        self._fd = -1
        self._watchdog: asyncio.TimerHandle | None = None
        self._wake_pending = False
        # Held while the loop works on the driver, so that a move to another loop (a front
        # end started or stopped while the driver was idle) never overlaps that work. On
        # its own loop it is never contended; reentrant: a response callback may submit.
        self._bind_lock = threading.RLock()

    # entry ----------------------------------------------------------------------------
    def start(self) -> None:
        pass  # nothing runs until a request comes

    def wake(self) -> None:
        loop, thread = self._bound()
        if threading.get_ident() == thread:
            self._pump()
        elif not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._pump)
            except RuntimeError:  # the loop closed meanwhile: rebind and try once more
                self._wake_pending = False
                self._generation = -1
                loop, _ = self._bound()
                loop.call_soon_threadsafe(self._pump)

    def stop(self, deadline: float) -> None:
        pass  # the version waited for its requests: nothing is outstanding

    def _bound(self) -> tuple[asyncio.AbstractEventLoop, int]:
        loop = self.loop
        if loop is not None and self._generation == self.engine.generation:
            return loop, self.loop_thread
        with self._bind_lock:
            if self.loop is None or (not self.out and not self.away):
                self.loop, self.loop_thread = self.engine.get()
                self._generation = self.engine.generation
            assert self.loop is not None
            return self.loop, self.loop_thread

    # sending and answering (on the loop) ------------------------------------------------
    def _pump(self) -> None:
        """Send queued requests while the instance has room."""
        self._wake_pending = False
        if threading.get_ident() != self.loop_thread:  # scheduled before a rebind
            self.wake()
            return
        with self._bind_lock:
            c, out = self.completion, self.out
            while not self.away and len(out) < self.depth:
                if self.gate is not None and not self._granted and not self._take_turn():
                    return  # called back when this instance's turn comes
                items = self.fifo.take_nowait()
                if items is None:
                    self._give_back_turn()
                    return
                started = c.begin(self.instance, items)
                if started is None:
                    self._give_back_turn()
                    continue  # cancelled: answered already
                if started.pending is None:  # begin_execute raised: the batch fails now
                    self._give_back_turn()
                    c.end(started)
                    continue
                out.append(started)
                if not self._watch(started.pending):
                    self._hand_off()
                    return

    # the rate limiter (--rate-limit) ---------------------------------------------------
    def _take_turn(self) -> bool:
        """This instance's resources for the next execute: True when held now."""
        if self._awaiting or not len(self.fifo):
            return False
        assert self.gate is not None
        limiter, limit = self.gate
        self._awaiting = True
        if limiter.acquire(limit, on_grant=self._turn_came):
            self._awaiting = False
            self._granted = True
        return self._granted

    def _turn_came(self) -> None:  # on the thread that released the resources
        self._granted = True
        self._awaiting = False
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._pump)
                return
            except RuntimeError:  # the loop is gone: nothing will send
                pass
        self._give_back_turn()

    def _give_back_turn(self) -> None:
        if self.gate is not None and self._granted:
            self._granted = False
            limiter, limit = self.gate
            limiter.release(limit)

    def _watch(self, pending: abi.PendingExecute) -> bool:
        """Watch ``pending``'s descriptor; False when it has none the loop can watch."""
        fileno = getattr(pending, "fileno", None)
        fd = fileno() if fileno is not None else None
        if fd is None or fd < 0:
            return False
        if self._fd >= 0:
            return fd == self._fd  # another descriptor: the worker changed (a restart)
        assert self.loop is not None
        try:
            self.loop.add_reader(fd, self._on_readable)
        except (OSError, RuntimeError, ValueError):
            return False  # closed meanwhile
        self._fd = fd
        self._watchdog = self.loop.call_later(self.patience_s, self._check_patience)
        return True

    def _unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                assert self.loop is not None
                self.loop.remove_reader(fd)
            except (OSError, RuntimeError, ValueError):
                pass  # closed meanwhile (a worker restart); its number may be reused

    def _on_readable(self) -> None:
        with self._bind_lock:
            self._answer()

    def _answer(self) -> None:
        c, out = self.completion, self.out
        answered = False
        while out and not self.away:
            head = out[0]
            assert head.pending is not None
            if not head.pending.wait(0):
                break
            out.popleft()
            answered = True
            c.collect(head)
            self._give_back_turn()
            self._pump()  # the next one is on its way before this one is delivered
            c.end(head)
        if not out and not self.away:
            self._unwatch()
        elif not answered and not self.away:
            self._hand_off()  # readable without a result: the peer closed; a thread finds out

    def _check_patience(self) -> None:
        with self._bind_lock:
            self._watchdog = None
            self._check_head()

    def _check_head(self) -> None:
        if not self.out or self.away:
            return
        assert self.loop is not None
        age_s = (time.monotonic_ns() - self.out[0].timer.exec_start_ns) / 1e9
        if age_s >= self.patience_s:
            self._hand_off()
        else:
            self._watchdog = self.loop.call_later(self.patience_s - age_s, self._check_patience)

    # rescue -----------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """A thread takes the outstanding executes and waits for them; then the instance
        comes back to the loop."""
        self._unwatch()
        started = list(self.out)
        self.out.clear()
        self.away = True
        threading.Thread(target=self._rescue, args=(started, self.loop),
                         name=f"triton-{self.name}-wait", daemon=True).start()

    def _rescue(self, started: list[Started], loop: asyncio.AbstractEventLoop) -> None:
        try:
            for s in started:
                self.completion.end(s)
        finally:
            try:
                loop.call_soon_threadsafe(self._back)
            except RuntimeError:  # the loop is gone (shutting down): nobody sends any more
                self.away = False
                self._give_back_turn()

    def _back(self) -> None:
        with self._bind_lock:
            self.away = False
            self._give_back_turn()
        self._pump()
