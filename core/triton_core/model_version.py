"""A loaded model version: its backend Model, instance worker threads and queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from . import abi
from .config import ModelConfig
from .errors import ErrorCode, TritonError
from .request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, ResponseSender
from .scheduler import RequestQueue, _Item
from .stats import ModelStats

log = logging.getLogger("triton_core")


class InstanceWorker(threading.Thread):
    """Owns one backend Instance; execute is only ever called from this thread."""

    def __init__(self, version: LoadedVersion, instance: abi.Instance, name: str) -> None:
        super().__init__(name=f"triton-{name}", daemon=True)
        self.version = version
        self.instance = instance

    def run(self) -> None:
        q = self.version.queue
        while True:
            items = q.take()
            if items is None:
                return
            self.version.execute(self.instance, items)


class LoadedVersion:
    """One READY model version: accepts requests, runs them on its instances."""

    def __init__(self, name: str, version: int, model: abi.Model, config: ModelConfig) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.config = config
        self.queue = RequestQueue(config)
        self.stats = ModelStats()
        self.workers: list[InstanceWorker] = []
        self.instances: list[abi.Instance] = []
        self._inflight = 0
        self._idle = threading.Condition()
        self.accepting = True
        self.decoupled = config.decoupled

    # lifecycle ---------------------------------------------------------------
    def create_instances(self) -> None:
        try:
            for group_idx, group in enumerate(self.config.instance_group):
                kind = "KIND_CPU" if group.kind == "KIND_AUTO" else group.kind
                gname = group.name or f"{self.name}_{group_idx}"
                devices = group.gpus if kind == "KIND_GPU" and group.gpus else [0]
                for dev in devices:
                    for i in range(group.count):
                        iname = f"{gname}_{i}" if len(devices) == 1 else f"{gname}_{i}_gpu{dev}"
                        ctx = abi.InstanceContext(name=iname, kind=kind, device_id=dev)
                        inst = self.model.create_instance(ctx)
                        self.instances.append(inst)
                        self.workers.append(InstanceWorker(self, inst, iname))
        except BaseException:
            self._close_instances()
            raise
        for w in self.workers:
            w.start()

    def _close_instances(self) -> None:
        for inst in self.instances:
            try:
                inst.close()
            except Exception as e:
                log.warning("model '%s' version %d: instance close failed: %s", self.name, self.version, e)
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
        """Stop accepting, let queued and running requests finish, free everything."""
        self.accepting = False
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
        self.queue.close()
        for item in self.queue.drain():
            self._finish(item.request, error=TritonError.unavailable(
                f"model '{self.name}' version {self.version} is unloading"), reason="OTHER")
        for w in self.workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        self._close_instances()
        try:
            self.model.close()
        except Exception as e:
            log.warning("model '%s' version %d: close failed: %s", self.name, self.version, e)

    # requests ----------------------------------------------------------------
    def submit(self, req: InferenceRequest, batch_size: int) -> None:
        """Queue a validated request; its callback receives the response."""
        if not self.accepting:
            raise TritonError.unavailable(f"model '{self.name}' version {self.version} is not ready")
        with self._idle:
            self._inflight += 1
        with self.stats.lock:
            self.stats.pending += 1
        if self.decoupled:
            req.sender = ResponseSender(req, self._on_send)
        self.queue.put(req, batch_size)

    def _release(self, n: int) -> None:
        with self.stats.lock:
            self.stats.pending -= n
        with self._idle:
            self._inflight -= n
            if self._inflight == 0:
                self._idle.notify_all()

    def _finish(self, req: InferenceRequest, error: TritonError, reason: str) -> None:
        self.stats.record_failure(time.monotonic_ns() - req.arrival_ns, reason)
        if req.sender is not None:
            req.sender._closed = True  # noqa: SLF001 - the core answers for the backend
        self._deliver(req, InferenceResponse(self.name, self.version, req.id, error=error),
                      RESPONSE_COMPLETE_FINAL)
        self._release(1)

    def _deliver(self, req: InferenceRequest, resp: InferenceResponse | None, flags: int) -> None:
        if resp is not None:
            resp.model_name = self.name
            resp.model_version = self.version
            resp.id = req.id
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

    def execute(self, instance: abi.Instance, items: Sequence[_Item]) -> None:
        requests = [it.request for it in items]
        live = []
        for it in items:
            if it.request.cancelled:
                self._finish(it.request, TritonError(ErrorCode.CANCELLED, "request cancelled"),
                             "CANCELED")
            else:
                live.append(it)
        if not live:
            return
        requests = [it.request for it in live]
        timer = abi.ExecuteTimer()
        if self.decoupled:
            self._execute_decoupled(instance, live, requests, timer)
            return
        try:
            responses = instance.execute(requests, timer)
            if len(responses) != len(requests):
                raise TritonError.internal(
                    f"backend returned {len(responses)} responses for {len(requests)} requests"
                )
        except TritonError as e:
            responses = [InferenceResponse(error=e) for _ in requests]
        except Exception as e:
            log.exception("model '%s' execute failed", self.name)
            err = TritonError.internal(f"{type(e).__name__}: {e}")
            responses = [InferenceResponse(error=err) for _ in requests]
        timer.exec_end_ns = time.monotonic_ns()
        ok = [resp.error is None for resp in responses]
        self._record(live, requests, timer, ok)
        for req, resp in zip(requests, responses, strict=True):
            self._deliver(req, resp, RESPONSE_COMPLETE_FINAL)
        self._release(len(live))

    def _execute_decoupled(self, instance: abi.Instance, live: Sequence[_Item],
                           requests: list[InferenceRequest], timer: abi.ExecuteTimer) -> None:
        error: TritonError | None = None
        try:
            instance.execute(requests, timer)
        except TritonError as e:
            error = e
        except Exception as e:
            log.exception("model '%s' execute failed", self.name)
            error = TritonError.internal(f"{type(e).__name__}: {e}")
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
