"""How a model version's requests end: executes run and concluded, responses delivered
(in arrival order under ``preserve_ordering``), failures answered, statistics kept.

Shared by the drivers (scheduling/driver.py), which decide where and when an execute
runs; ``Completion`` decides what happens around it. Every method may be called from
any thread: the drivers' threads, the event loop, a client's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from .. import abi
from ..errors import ErrorCode, TritonError, as_triton_error
from ..request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, ResponseSender
from .inflight import InFlight
from .queue import _Item
from .scheduler import Scheduler
from .stats import ModelStats

log = logging.getLogger("triton_core")

CANCELLED_MESSAGE = "request cancelled"


class Started:
    """One batch sent to an instance whose result is awaited (Instance.begin_execute)."""

    __slots__ = ("live", "requests", "timer", "pending", "responses")

    def __init__(self, live: list[_Item], requests: list[InferenceRequest], timer: abi.ExecuteTimer,
                 pending: abi.PendingExecute | None,
                 responses: list[InferenceResponse] | None) -> None:
        self.live = live
        self.requests = requests
        self.timer = timer
        self.pending = pending  # None when begin_execute raised: ``responses`` hold the error
        self.responses = responses


class Completion:
    """The end of every request of one model version."""

    def __init__(self, name: str, version: int, scheduler: Scheduler, stats: ModelStats,
                 inflight: InFlight, decoupled: bool) -> None:
        self.name = name
        self.version = version
        self.scheduler = scheduler
        self.stats = stats
        self.inflight = inflight
        self.decoupled = decoupled
        self._sequence = scheduler if scheduler.stateful else None
        # id()s of the instances that take inputs in GPU memory as they are (KIND_GPU of a
        # backend with BackendSpec.device_tensors); every other gets host copies first
        self.on_device: set[int] = set()
        # preserve_ordering: responses leave in the order requests arrived
        self.ordered = scheduler.preserve_ordering and not decoupled
        self._order_lock = threading.Lock()
        self._order_in = 0
        self._order_out = 0
        self._tickets: dict[int, int] = {}
        self._held: dict[int, tuple[InferenceRequest | None, InferenceResponse | None]] = {}
        # the average execute time (ns): the drivers' policy reads it
        self.exec_ewma_ns = 0
        self.exec_count = 0

    # acceptance ----------------------------------------------------------------------
    def accept(self, req: InferenceRequest) -> None:
        """``req`` is accepted: it counts as in flight and will be answered."""
        self.inflight.enter()
        if self.decoupled:
            req.sender = ResponseSender(req, self._on_send)
        if self.ordered:
            with self._order_lock:
                self._tickets[id(req)] = self._order_in
                self._order_in += 1

    def refuse(self, req: InferenceRequest) -> None:
        """An accepted ``req`` was refused by the scheduler after all (the caller raises)."""
        if self.ordered:
            self._skip_ticket(req)
        self.stats.record_failure(time.monotonic_ns() - req.arrival_ns, "REJECTED")
        req.sender = None
        self.inflight.leave(1)

    # failures ------------------------------------------------------------------------
    def fail(self, req: InferenceRequest, error: TritonError, reason: str) -> None:
        """Answer an accepted request that will not run (``reason``: the statistic)."""
        if req.trace is not None:
            req.trace.stamp("REQUEST_START", req.arrival_ns)
        self.stats.record_failure(time.monotonic_ns() - req.arrival_ns, reason)
        if req.sender is not None:
            req.sender._closed = True  # noqa: SLF001 - the core answers for the backend
        self._complete(req, InferenceResponse(self.name, self.version, req.id, error=error))
        self.inflight.leave(1)

    def reject(self, item: _Item, error: TritonError) -> None:
        """The scheduler's timeout rejection."""
        self.fail(item.request, error, "REJECTED")

    def cancelled(self, req: InferenceRequest) -> None:
        self.fail(req, TritonError(ErrorCode.CANCELLED, CANCELLED_MESSAGE), "CANCELED")

    def live_items(self, items: Sequence[_Item], instance: abi.Instance | None = None
                   ) -> list[_Item]:
        """The items still wanted; cancelled ones are answered now. For an ``instance``
        that takes no GPU inputs, inputs in GPU memory are copied to the host here: a
        request whose copy fails is answered with the error."""
        live: list[_Item] = []
        dropped: list[_Item] = []
        host = instance is not None and id(instance) not in self.on_device
        for it in items:
            if it.request.cancelled:
                dropped.append(it)
                self.cancelled(it.request)
                continue
            if host:
                try:
                    for t in it.request.inputs.values():
                        t.to_host()
                except TritonError as e:
                    dropped.append(it)
                    self.fail(it.request, e, "OTHER")
                    continue
            live.append(it)
        if dropped and self._sequence is not None:
            self._sequence.done(dropped, [None] * len(dropped))
        return live

    # executes ------------------------------------------------------------------------
    def run(self, instance: abi.Instance, items: Sequence[_Item]) -> None:
        """Execute a batch on ``instance`` and conclude it, blocking (any batch kind)."""
        live = self.live_items(items, instance)
        if not live:
            return
        requests = [it.request for it in live]
        timer = abi.ExecuteTimer()
        seq = self._sequence
        batch = seq.prepare(live) if seq is not None else requests  # + padding rows
        if self.decoupled:
            self._execute_decoupled(instance, live, requests, timer, batch)
            if seq is not None:
                seq.done(live, [None] * len(live))
            return
        responses = self._responses(lambda: instance.execute(batch, timer), batch)
        timer.exec_end_ns = time.monotonic_ns()
        self.conclude(live, requests, timer, responses)

    def begin(self, instance: abi.Instance, items: Sequence[_Item]) -> Started | None:
        """Start a plain batch (no sequence, not decoupled) without waiting for it; None
        when every request was cancelled."""
        live = self.live_items(items, instance)
        if not live:
            return None
        requests = [it.request for it in live]
        timer = abi.ExecuteTimer()
        try:
            return Started(live, requests, timer, instance.begin_execute(requests, timer), None)
        except Exception as e:  # noqa: BLE001 - fails the batch like execute would
            return Started(live, requests, timer, None, self._failed(e, requests))

    def collect(self, started: Started) -> None:
        """Take a started batch's result (blocking unless ``pending.wait(0)`` said it is
        there); the instance is free for the next one from here."""
        pending = started.pending
        if pending is not None:
            started.pending = None
            started.responses = self._responses(pending.result, started.requests)
            started.timer.exec_end_ns = time.monotonic_ns()

    def end(self, started: Started) -> None:
        """Conclude a started batch (collecting its result first if not done yet)."""
        self.collect(started)
        responses = started.responses
        assert responses is not None
        if not started.timer.exec_end_ns:
            started.timer.exec_end_ns = time.monotonic_ns()
        self.conclude(started.live, started.requests, started.timer, responses)

    def conclude(self, live: list[_Item], requests: list[InferenceRequest], timer: abi.ExecuteTimer,
                 responses: list[InferenceResponse]) -> None:
        seq = self._sequence
        if seq is not None:  # the state is kept, padding rows' responses dropped
            responses = seq.done(live, responses)
        ok = [resp.error is None for resp in responses]
        self._record(live, requests, timer, ok)
        for req, resp in zip(requests, responses, strict=True):
            self._complete(req, resp)
        self.inflight.leave(len(live))

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
        end = timer.exec_end_ns or time.monotonic_ns()
        start = timer.exec_start_ns
        took = end - start
        self.exec_ewma_ns = took if self.exec_count == 0 else (self.exec_ewma_ns * 7 + took) // 8
        self.exec_count += 1
        cs = timer.compute_start_ns or start
        ce = timer.compute_end_ns or end
        for it in live:
            trace = it.request.trace
            if trace is not None:
                for name, ns in (("REQUEST_START", it.request.arrival_ns),
                                 ("QUEUE_START", it.enqueue_ns), ("COMPUTE_START", start),
                                 ("COMPUTE_INPUT_END", cs), ("COMPUTE_OUTPUT_START", ce),
                                 ("COMPUTE_END", end)):
                    trace.stamp(name, ns)
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

    # delivery ------------------------------------------------------------------------
    def _complete(self, req: InferenceRequest, resp: InferenceResponse) -> None:
        """The FINAL response of a request, in arrival order under preserve_ordering."""
        if not self.ordered:
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
        hist = self.stats.first_response
        if hist is not None and not req.responded:
            req.responded = True
            hist.observe((time.monotonic_ns() - req.arrival_ns) / 1e6)
        trace = req.trace
        if trace is not None and resp is not None and trace.tensors is not None:
            for t in resp.outputs:
                trace.tensor("TENSOR_BACKEND_OUTPUT", t.name, t.datatype.value, t.shape,
                             t.as_numpy())
        if trace is not None and flags & RESPONSE_COMPLETE_FINAL:
            req.trace = None
            trace.stamp("REQUEST_END", time.monotonic_ns())
            trace.done()
        cb = req.callback
        if cb is not None:
            try:
                cb(resp, flags)
            except Exception as e:  # a broken callback must not kill the driver
                log.error("response callback failed: %s", e)

    def _on_send(self, req: InferenceRequest, resp: InferenceResponse | None, flags: int) -> None:
        """A decoupled model's response; FINAL completes the request."""
        self._deliver(req, resp, flags)
        if flags & RESPONSE_COMPLETE_FINAL:
            self.inflight.leave(1)
