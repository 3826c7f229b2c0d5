"""A loaded model version: its backend Model, instance worker threads and queue."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import abi
from ..config import ModelConfig
from ..errors import ErrorCode, TritonError, as_triton_error
from ..request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, ResponseSender
from ..scheduling.cache import ResponseCache
from ..scheduling.cache_use import CachedVersion, next_load_id
from ..scheduling.clock import MONOTONIC, Clock
from ..scheduling.inflight import InFlight
from ..scheduling.pipeline import LoopPipeline
from ..scheduling.policy import DEFAULT_POLICY, FastPathPolicy
from ..scheduling.queue import FifoQueue, _Item
from ..scheduling.scheduler import Scheduler, make_scheduler
from ..scheduling.servable import FastPath
from ..scheduling.stats import ModelStats
from .placement import instance_count, plan_instances

log = logging.getLogger("triton_core")


class InstanceWorker(threading.Thread):
    """Owns one backend Instance; execute is only ever called from this thread."""

    def __init__(self, version: LoadedVersion, instance: abi.Instance, name: str,
                 index: int = 0) -> None:
        super().__init__(name=f"triton-{name}", daemon=True)
        self.version = version
        self.instance = instance
        self.index = index

    def run(self) -> None:
        q = self.version.queue
        idx = self.index
        lock = self.version.instance_locks[idx]
        while True:
            items = q.take(idx)
            if items is None:
                return
            if items:
                waiting = self.version.lock_waiting
                waiting[idx] = True  # the loop's pipeline gives the instance back soon
                lock.acquire()
                waiting[idx] = False
                if self.version.pipelined:
                    self.version.execute_pipelined(self.instance, items, lock)
                else:
                    self.version.execute(self.instance, items, lock)


_NO_BEGIN = abi.Instance.begin_execute  # instances need not subclass abi.Instance


class LoadedVersion(CachedVersion):
    """One READY model version: accepts requests, runs them on its instances.

    A scheduling.servable.Servable, and its own FastPath (inline and loop-pipelined
    execution).
    """

    def __init__(self, name: str, version: int, model: abi.Model, config: ModelConfig,
                 model_path: Path | None = None, clock: Clock = MONOTONIC,
                 policy: FastPathPolicy = DEFAULT_POLICY) -> None:
        self.name = name
        self.policy = policy  # when a request may run on the event loop (fast paths)
        self.version = version
        self.model = model
        self.config = config
        self.clock = clock  # the schedulers' time: queue delays, timeouts, sequence idling
        self.queue: Scheduler = make_scheduler(config, _instance_count(config), self._on_reject,
                                               model_path, clock)
        self.sequence = self.queue.stateful  # prepare / done around each execute
        self.fifo: FifoQueue | None = self.queue.fifo  # the pipelined path's queue
        self.inflight = InFlight()
        self.stats = ModelStats(self.inflight)
        self.cache: ResponseCache | None = None  # set by the manager (response_cache)
        self.load_id = next_load_id()
        # preserve_ordering: responses leave in the order requests arrived
        self._ordered = self.queue.preserve_ordering and not config.decoupled
        self._order_lock = threading.Lock()
        self._order_in = 0
        self._order_out = 0
        self._tickets: dict[int, int] = {}
        self._held: dict[int, tuple[InferenceRequest, InferenceResponse]] = {}
        self.workers: list[InstanceWorker] = []
        self.instances: list[abi.Instance] = []
        self.instance_locks: list[threading.Lock] = []
        self.lock_waiting: list[bool] = []  # an instance thread holds a batch for that instance
        self._exec_ewma_ns = 0
        self._exec_count = 0
        self._inline_capable = False
        self._begin_capable = False
        self.pipelined = False
        self.loop_pipeline: LoopPipeline | None = None
        self.accepting = True
        self.decoupled = config.decoupled
        self.fast_path: FastPath | None = self
        # set by the manager: the server is shutting down, a load in progress gives up
        self.stopping: Callable[[], bool] = lambda: False

    # lifecycle ---------------------------------------------------------------
    def create_instances(self) -> None:
        try:
            for planned in plan_instances(self.config):
                if self.stopping():  # e.g. count 10000: SIGTERM must not wait for all
                    raise TritonError.unavailable(
                        f"model '{self.name}' version {self.version}: load abandoned: "
                        "the server is stopping")
                ctx = abi.InstanceContext(name=planned.name, kind=planned.kind,
                                          device_id=planned.device_id)
                inst = self.model.create_instance(ctx)
                self.instances.append(inst)
                self.instance_locks.append(threading.Lock())
                self.lock_waiting.append(False)
                self.workers.append(InstanceWorker(self, inst, planned.name, len(self.workers)))
        except BaseException:
            self._close_instances()
            raise
        # Inline execution suits the plain path only: one request, no scheduler state.
        self._begin_capable = bool(self.instances) and all(
            getattr(type(i), "begin_execute", _NO_BEGIN) is not _NO_BEGIN for i in self.instances)
        # The instance thread keeps a second request at an instance that allows it
        # (pipeline_depth >= 2): the other process starts it as soon as it answers one.
        self.pipelined = (
            self._begin_capable
            and all(getattr(i, "pipeline_depth", 1) >= 2 for i in self.instances)
            and not self.decoupled and not self.sequence and not self._ordered
            and self.fifo is not None)
        self._inline_capable = (
            bool(self.instances)
            and (self._begin_capable
                 or all(getattr(i, "inline_execute", False) for i in self.instances))
            and not self.decoupled and not self.sequence and not self._ordered
            and not self.queue.batching)
        for w in self.workers:
            w.start()

    def _close_instances(self, deadline: float | None = None) -> None:
        what = f"model '{self.name}' version {self.version}: instance close"
        for inst in self.instances:
            if deadline is None:
                try:
                    inst.close()
                except Exception as e:
                    log.warning("%s failed: %s", what, e)
            else:
                _bounded(inst.close, deadline, what)
        self.instances.clear()

    def instances_ready(self) -> bool:
        """Every instance says it can serve (Instance.is_ready; a failing check counts as not)."""
        for inst in self.instances:
            try:
                if not inst.is_ready():
                    return False
            except Exception:  # noqa: BLE001 - a broken check means not ready
                return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, let queued and running requests finish, free everything.

        Every wait shares one deadline (``timeout`` from now): in-flight requests, the
        instance threads, then each instance's and the model's close. A close still
        running at the deadline is left to its thread (a backend that cannot stop a hung
        execute in time kills it in its own close); the caller is never held longer.
        """
        self.accepting = False
        deadline = time.monotonic() + timeout
        self.inflight.wait_idle(timeout)
        self.queue.close()
        for item in self.queue.drain():
            self._finish(item.request, error=TritonError.unavailable(
                f"model '{self.name}' version {self.version} is unloading"), reason="OTHER")
        for w in self.workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        self._close_instances(deadline)
        _bounded(self.model.close, deadline, f"model '{self.name}' version {self.version}: close")

    # requests ----------------------------------------------------------------
    def submit(self, req: InferenceRequest, batch_size: int) -> None:
        """Queue a validated request; its callback receives the response.

        Raises TritonError when the request is refused up front (not accepting,
        queue full, a sequence error); the callback is then never called.
        """
        if not self.accepting:
            raise TritonError.unavailable(f"model '{self.name}' version {self.version} is not ready")
        cache = self.cache
        if cache is not None and self._cache_lookup(cache, req):
            return
        self.inflight.enter()
        if self.decoupled:
            req.sender = ResponseSender(req, self._on_send)
        if self._ordered:
            with self._order_lock:
                self._tickets[id(req)] = self._order_in
                self._order_in += 1
        try:
            self.queue.put(req, batch_size)
        except TritonError:
            if self._ordered:
                self._skip_ticket(req)
            self.stats.record_failure(time.monotonic_ns() - req.arrival_ns, "REJECTED")
            req.sender = None
            self._release(1)
            raise

    def cancel(self, req: InferenceRequest) -> None:
        """A client gave up: mark the request and fail it now if it is still queued."""
        req.cancelled = True
        if self.loop_pipeline is not None:
            self.loop_pipeline.cancel(req)
        item = self.queue.remove(req)
        if item is not None:
            self._finish(req, TritonError(ErrorCode.CANCELLED, "request cancelled"), "CANCELED")

    # completion ----------------------------------------------------------------
    def _on_reject(self, item: _Item, error: TritonError) -> None:
        self._finish(item.request, error, "REJECTED")

    def _release(self, n: int) -> None:
        self.inflight.leave(n)

    def _finish(self, req: InferenceRequest, error: TritonError, reason: str) -> None:
        self.stats.record_failure(time.monotonic_ns() - req.arrival_ns, reason)
        if req.sender is not None:
            req.sender._closed = True  # noqa: SLF001 - the core answers for the backend
        self._complete(req, InferenceResponse(self.name, self.version, req.id, error=error))
        self._release(1)

    def _complete(self, req: InferenceRequest, resp: InferenceResponse) -> None:
        """The FINAL response of a request, in arrival order under preserve_ordering."""
        if not self._ordered:
            self._deliver(req, resp, RESPONSE_COMPLETE_FINAL)
            return
        ready: list[tuple[InferenceRequest, InferenceResponse]] = []
        with self._order_lock:
            ticket = self._tickets.pop(id(req), None)
            if ticket is None:
                ready.append((req, resp))
            else:
                self._held[ticket] = (req, resp)
                self._drain_held(ready)
        for r, rs in ready:
            self._deliver(r, rs, RESPONSE_COMPLETE_FINAL)

    def _drain_held(self, ready: list) -> None:
        while True:
            nxt = self._held.pop(self._order_out, None)
            if nxt is None:
                return
            self._order_out += 1
            if nxt[0] is not None:
                ready.append(nxt)

    def _skip_ticket(self, req: InferenceRequest) -> None:
        ready: list = []
        with self._order_lock:
            ticket = self._tickets.pop(id(req), None)
            if ticket is not None:
                self._held[ticket] = (None, None)
                self._drain_held(ready)
        for r, rs in ready:
            self._deliver(r, rs, RESPONSE_COMPLETE_FINAL)

    def _deliver(self, req: InferenceRequest, resp: InferenceResponse | None, flags: int) -> None:
        if resp is not None:
            resp.model_name = self.name
            resp.model_version = self.version
            resp.id = req.id
            if req.outputs is not None and resp.outputs:
                # Only what the client asked for, whatever the backend returned.
                names = {o.name for o in req.outputs}
                if len(resp.outputs) != len(names) or any(t.name not in names for t in resp.outputs):
                    resp.outputs = [t for t in resp.outputs if t.name in names]
        cb = req.callback
        if cb is not None:
            try:
                cb(resp, flags)
            except Exception as e:  # a broken callback must not kill the worker
                log.error("response callback failed: %s", e)

    def _on_send(self, req: InferenceRequest, resp: InferenceResponse | None, flags: int) -> None:
        """A decoupled model's response; FINAL completes the request."""
        self._deliver(req, resp, flags)
        if flags & RESPONSE_COMPLETE_FINAL:
            self._release(1)

    def pipeline_on(self, loop: asyncio.AbstractEventLoop) -> LoopPipeline | None:
        """The loop's pipeline for this version (pipelined models only)."""
        p = self.policy
        if self.cache is not None or (self._exec_count >= p.inline_warmup
                                      and self._exec_ewma_ns > p.loop_max_exec_ns):
            return None
        lp = self.loop_pipeline
        if lp is None or (lp.loop is not loop and not lp.owned):
            if not self.pipelined or self.fifo is None:
                return None
            lp = self.loop_pipeline = LoopPipeline(self, loop, self.fifo)
        return lp if lp.loop is loop else None

    @property
    def begin_capable(self) -> bool:
        """Its instances start executes without waiting for them (Instance.begin_execute)."""
        return self._begin_capable

    def inline_ready(self) -> bool:
        """Cheap pre-check for try_inline (no locks taken)."""
        return self._can_inline()

    def _can_inline(self) -> bool:
        p = self.policy
        return (self._inline_capable and self._exec_count >= p.inline_warmup
                and self._exec_ewma_ns < p.inline_max_exec_ns and self.accepting
                and self.cache is None and len(self.queue) == 0)

    def try_inline(self, req: InferenceRequest, batch_size: int,
                   on_defer: Callable[[], None] | None = None) -> bool:
        """Run the request now on the calling thread if an instance is idle and the model
        is fast; False means the caller must submit() it.

        For instances with ``begin_execute``, a result that takes longer than
        policy.inline_wait_s is left to a thread: ``on_defer`` is called first (on this thread)
        so the caller can switch ``req.callback`` to a cross-thread delivery; without
        ``on_defer`` such instances are not run inline.
        """
        if on_defer is None and self._begin_capable:
            return False
        for idx, lock in enumerate(self.instance_locks):
            if lock.acquire(blocking=False):
                self.inflight.enter()
                self.execute(self.instances[idx], [_Item(req, batch_size, (), self.clock.now_ns())],
                             lock, on_defer)
                return True
        return False

    def execute(self, instance: abi.Instance, items: Sequence[_Item], lock: threading.Lock,
                on_defer: Callable[[], None] | None = None) -> None:
        """Run one batch on ``instance``, whose ``lock`` the caller holds.

        The lock is released as soon as the instance is done, before responses are
        delivered: a client's next request may then find the instance idle (try_inline)
        instead of racing the worker thread for it. Released from a thread when a
        begin_execute result is left to one (see try_inline).
        """
        owned = True
        try:
            owned = self._execute_locked(instance, items, lock, on_defer)
        finally:
            if owned:
                lock.release()

    def _execute_locked(self, instance: abi.Instance, items: Sequence[_Item], lock: threading.Lock,
                        on_defer: Callable[[], None] | None) -> bool:
        """execute's body; False once it released ``lock`` or gave it to a thread."""
        live, dropped = self._live_items(items)
        seq = self.queue if self.sequence else None
        if seq is not None and dropped:
            seq.done(dropped, [None] * len(dropped))
        if not live:
            return True
        requests = [it.request for it in live]
        timer = abi.ExecuteTimer()
        batch = requests
        if seq is not None:
            batch = seq.prepare(live)  # + padding rows (direct)
        if self.decoupled:
            self._execute_decoupled(instance, live, requests, timer, batch)
            if seq is not None:
                seq.done(live, [None] * len(live))
            return True
        if on_defer is not None and self._begin_capable:
            try:
                pending = instance.begin_execute(requests, timer)
            except Exception as e:  # noqa: BLE001 - fails the batch like execute would
                responses = self._failed(e, requests)
            else:
                if not pending.wait(self.policy.inline_wait_s):
                    on_defer()
                    threading.Thread(target=self._finish_later, name=f"triton-{self.name}-wait",
                                     args=(pending, lock, live, requests, timer), daemon=True).start()
                    return False
                responses = self._responses(pending.result, requests)
        else:
            responses = self._responses(lambda: instance.execute(batch, timer), batch)
        timer.exec_end_ns = time.monotonic_ns()
        lock.release()
        self._conclude(live, requests, timer, responses)
        return False

    def _live_items(self, items: Sequence[_Item]) -> tuple[list[_Item], list[_Item]]:
        """(live, dropped): cancelled requests are failed now."""
        live: list[_Item] = []
        dropped: list[_Item] = []
        for it in items:
            if it.request.cancelled:
                dropped.append(it)
                self._finish(it.request, TritonError(ErrorCode.CANCELLED, "request cancelled"),
                             "CANCELED")
            else:
                live.append(it)
        return live, dropped

    def execute_pipelined(self, instance: abi.Instance, items: Sequence[_Item],
                          lock: threading.Lock) -> None:
        """Run ``items`` and whatever else is queued, keeping the next request already
        sent (begin_execute) while the current one runs. ``lock`` is released as soon as
        nothing more is sent, before the last answer is delivered (so the client's next
        request can find the instance idle). Unscheduled, non-decoupled, non-sequence
        models only."""
        q = self.fifo
        assert q is not None  # pipelined implies a FifoQueue
        owned = True
        try:
            cur = self._begin(instance, items)
            while True:
                nxt = None
                while nxt is None and (more := q.take_nowait()) is not None:
                    nxt = self._begin(instance, more)
                if cur is None:
                    if nxt is None:
                        return
                    cur = nxt
                    continue
                live, requests, timer, pending, responses = cur
                if pending is not None:
                    responses = self._responses(pending.result, requests)
                timer.exec_end_ns = time.monotonic_ns()
                if nxt is None:
                    while nxt is None and (more := q.take_nowait()) is not None:
                        nxt = self._begin(instance, more)
                    if nxt is None:
                        owned = False
                        lock.release()
                        self._conclude(live, requests, timer, responses)
                        return
                self._conclude(live, requests, timer, responses)
                cur = nxt
        finally:
            if owned:
                lock.release()

    def _begin(self, instance: abi.Instance, items: Sequence[_Item]) -> tuple | None:
        """(live, requests, timer, pending or None, error responses or None); None when
        every request was cancelled."""
        live, _ = self._live_items(items)
        if not live:
            return None
        requests = [it.request for it in live]
        timer = abi.ExecuteTimer()
        try:
            return live, requests, timer, instance.begin_execute(requests, timer), None
        except Exception as e:  # noqa: BLE001 - fails the batch like execute would
            return live, requests, timer, None, self._failed(e, requests)

    def _finish_later(self, pending: abi.PendingExecute, lock: threading.Lock, live: list[_Item],
                      requests: list[InferenceRequest], timer: abi.ExecuteTimer) -> None:
        try:
            responses = self._responses(pending.result, requests)
            timer.exec_end_ns = time.monotonic_ns()
        finally:
            lock.release()
        self._conclude(live, requests, timer, responses)

    def _responses(self, run: Callable[[], list[InferenceResponse] | None],
                   batch: list[InferenceRequest]) -> list[InferenceResponse]:
        """One response per row of ``batch`` (padding rows included); errors become responses."""
        try:
            responses = run()
            if responses is None or len(responses) != len(batch):
                raise TritonError.internal(
                    f"backend returned {0 if responses is None else len(responses)} responses "
                    f"for {len(batch)} requests"
                )
            return responses
        except Exception as e:  # noqa: BLE001 - fails every request of the batch
            return self._failed(e, batch)

    def _failed(self, e: Exception, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        error = as_triton_error(e, f"model '{self.name}' execute")
        return [InferenceResponse(error=error) for _ in requests]

    def _conclude(self, live: list[_Item], requests: list[InferenceRequest], timer: abi.ExecuteTimer,
                  responses: list[InferenceResponse]) -> None:
        seq = self.queue if self.sequence else None
        if seq is not None:  # the state is kept, padding rows' responses dropped
            responses = seq.done(live, responses)
        ok = [resp.error is None for resp in responses]
        self._record(live, requests, timer, ok)
        for req, resp in zip(requests, responses, strict=True):
            self._complete(req, resp)
        self._release(len(live))

    def _execute_decoupled(self, instance: abi.Instance, live: Sequence[_Item],
                           requests: list[InferenceRequest], timer: abi.ExecuteTimer,
                           batch: list[InferenceRequest]) -> None:
        error: TritonError | None = None
        try:
            instance.execute(batch, timer)
        except Exception as e:  # noqa: BLE001 - fails every request of the batch
            error = as_triton_error(e, f"model '{self.name}' execute")
        timer.exec_end_ns = time.monotonic_ns()
        self._record(live, requests, timer, [error is None] * len(requests))
        if error is not None:
            for req in requests:
                sender = req.sender
                if sender is not None and not sender.closed:
                    try:
                        sender.send(InferenceResponse(error=error), RESPONSE_COMPLETE_FINAL)
                    except TritonError:
                        pass  # the backend closed it meanwhile

    def _record(self, live: Sequence[_Item], requests: list[InferenceRequest],
                timer: abi.ExecuteTimer, ok: list[bool]) -> None:
        took = (timer.exec_end_ns or time.monotonic_ns()) - timer.exec_start_ns
        self._exec_ewma_ns = took if self._exec_count == 0 else (self._exec_ewma_ns * 7 + took) // 8
        self._exec_count += 1
        end = timer.exec_end_ns or time.monotonic_ns()
        start = timer.exec_start_ns
        cs = timer.compute_start_ns or start
        ce = timer.compute_end_ns or end
        self.stats.record_execution(
            batch_size=sum(it.batch_size for it in live),
            n_requests=len(live),
            queue_ns=[start - it.enqueue_ns for it in live],
            request_ns=[end - r.arrival_ns for r in requests],
            ok=ok,
            compute_input_ns=cs - start,
            compute_infer_ns=ce - cs,
            compute_output_ns=end - ce,
        )


# A close past the unload deadline still gets this long before the caller moves on:
# enough for a backend that kills its hung work to do so.
_CLOSE_GRACE_S = 2.0


def _bounded(fn: Callable[[], None], deadline: float, what: str) -> None:
    """Run ``fn`` (a backend's close) on its own thread and wait for it until ``deadline``
    (plus a short grace): a close stuck on a hung execute must not hold an unload or the
    server's shutdown past the exit timeout."""
    def run() -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a failed close is logged, never fatal
            log.warning("%s failed: %s", what, e)

    t = threading.Thread(target=run, name="triton-close", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()) + _CLOSE_GRACE_S)
    if t.is_alive():
        log.error("%s did not finish by the unload deadline; left running", what)


def _instance_count(config: ModelConfig) -> int:
    return instance_count(config)
