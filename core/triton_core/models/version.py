"""A loaded model version: its backend Model, its instances with their drivers, its scheduler."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import abi
from ..config import ModelConfig
from ..errors import TritonError
from ..request import InferenceRequest
from ..scheduling.cache import ResponseCache
from ..scheduling.cache_use import CachedVersion, next_load_id
from ..scheduling.clock import MONOTONIC, Clock
from ..scheduling.completion import Completion
from ..scheduling.driver import Driver, loop_drivable
from ..scheduling.engine_loop import EngineLoop
from ..scheduling.inflight import InFlight
from ..scheduling.loop_driver import LoopDriver
from ..scheduling.policy import DEFAULT_POLICY, DriverPolicy
from ..scheduling.queue import _Item
from ..scheduling.rate_limiter import LimitedInstance, RateLimiter, needs_of
from ..scheduling.scheduler import Scheduler, make_scheduler
from ..scheduling.stats import ModelStats
from ..scheduling.thread_driver import ThreadDriver
from .placement import instance_count, plan_instances

log = logging.getLogger("triton_core")


class LoadedVersion(CachedVersion):
    """One READY model version: accepts requests, runs them on its instances.

    A scheduling.servable.Servable. Its parts: the scheduler (queue, batcher or sequence
    batcher), one driver per instance (scheduling/driver.py) and the completion of its
    requests (scheduling/completion.py).
    """

    def __init__(self, name: str, version: int, model: abi.Model, config: ModelConfig,
                 model_path: Path | None = None, clock: Clock = MONOTONIC,
                 policy: DriverPolicy = DEFAULT_POLICY, engine: EngineLoop | None = None,
                 rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.config = config
        self.policy = policy
        self.clock = clock  # the schedulers' time: queue delays, timeouts, sequence idling
        self.engine = engine  # the loop that loop drivers run on (the server's)
        self.rate_limiter = rate_limiter  # the server's (--rate-limit); None: off
        self.limits: list[LimitedInstance] = []  # the instances' places at the rate limiter
        self.queue: Scheduler = make_scheduler(config, _instance_count(config), self._on_reject,
                                               model_path, clock)
        self.inflight = InFlight()
        self.stats = ModelStats(self.inflight)
        self.completion = Completion(name, version, self.queue, self.stats, self.inflight,
                                     config.decoupled)
        self.cache: ResponseCache | None = None  # set by the manager (response_cache)
        self.load_id = next_load_id()
        self.instances: list[abi.Instance] = []
        self.drivers: list[Driver] = []
        self.accepting = True
        self.decoupled = config.decoupled
        # set by the manager: the server is shutting down, a load in progress gives up
        self.stopping: Callable[[], bool] = lambda: False
        # set by the manager: the backend's KIND_GPU instances take inputs in GPU memory
        self.device_tensors = False

    # lifecycle ---------------------------------------------------------------
    def create_instances(self) -> None:
        """Create every instance the config asks for, each with its driver (not started:
        warmup runs on the instances first, then start())."""
        try:
            groups = {(g.name or f"{self.name}_{i}"): g
                      for i, g in enumerate(self.config.instance_group)}
            for planned in plan_instances(self.config):
                if self.stopping():  # e.g. count 10000: SIGTERM must not wait for all
                    raise TritonError.unavailable(
                        f"model '{self.name}' version {self.version}: load abandoned: "
                        "the server is stopping")
                ctx = abi.InstanceContext(name=planned.name, kind=planned.kind,
                                          device_id=planned.device_id)
                limit = None
                if self.rate_limiter is not None:
                    needs, priority = needs_of(
                        groups[planned.group].rate_limiter,
                        f"model '{self.name}', instance group '{planned.group}'")
                    limit = self.rate_limiter.register(planned.name, planned.device_id, needs,
                                                       priority)
                    if limit is not None:
                        self.limits.append(limit)
                inst = self.model.create_instance(ctx)
                self.instances.append(inst)
                if planned.kind == "KIND_GPU" and self.device_tensors:
                    self.completion.on_device.add(id(inst))
                self.drivers.append(self._driver(inst, planned.name, len(self.drivers), limit))
        except BaseException:
            self._close_instances()
            raise

    def _driver(self, instance: abi.Instance, name: str, index: int,
                limit: LimitedInstance | None) -> Driver:
        gate = (self.rate_limiter, limit) if self.rate_limiter is not None and limit else None
        fifo = self.queue.fifo
        if fifo is not None and loop_drivable(instance, self.queue, self.decoupled):
            if self.engine is None:
                self.engine = EngineLoop(f"triton-{self.name}-loop")
            return LoopDriver(instance, name, fifo, self.completion, self.engine, self.policy,
                              gate)
        return ThreadDriver(instance, index, name, self.queue, self.completion, gate)

    def start(self) -> None:
        """Start serving: every driver begins taking work."""
        for d in self.drivers:
            d.start()

    def _close_instances(self, deadline: float | None = None) -> None:
        what = f"model '{self.name}' version {self.version}: instance close"
        if self.rate_limiter is not None:
            for limit in self.limits:
                self.rate_limiter.unregister(limit)
            self.limits.clear()
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
        drivers, then each instance's and the model's close. A close still running at the
        deadline is left to its thread (a backend that cannot stop a hung execute in time
        kills it in its own close); the caller is never held longer.
        """
        self.accepting = False
        deadline = time.monotonic() + timeout
        self.inflight.wait_idle(timeout)
        self.queue.close()
        for item in self.queue.drain():
            self.completion.fail(item.request, TritonError.unavailable(
                f"model '{self.name}' version {self.version} is unloading"), "OTHER")
        for d in self.drivers:
            d.stop(deadline)
        self._close_instances(deadline)
        _bounded(self.model.close, deadline, f"model '{self.name}' version {self.version}: close")

    # requests ----------------------------------------------------------------
    def submit(self, req: InferenceRequest, batch_size: int) -> None:
        """Queue a validated request; its callback receives the response (possibly before
        submit returns).

        Raises TritonError when the request is refused up front (not accepting,
        queue full, a sequence error); the callback is then never called.
        """
        if not self.accepting:
            raise TritonError.unavailable(f"model '{self.name}' version {self.version} is not ready")
        cache = self.cache
        if cache is not None and self._cache_lookup(cache, req):
            return
        c = self.completion
        c.accept(req)
        try:
            self.queue.put(req, batch_size)
        except TritonError:
            c.refuse(req)
            raise
        for d in self.drivers:  # a loop driver with room takes it now (on its loop)
            d.wake()
            if not len(self.queue):
                return

    def cancel(self, req: InferenceRequest) -> None:
        """A client gave up: mark the request and fail it now if it is still queued (a
        request already taken is dropped when its batch starts)."""
        req.cancelled = True
        item = self.queue.remove(req)
        if item is not None:
            self.completion.cancelled(req)

    def _on_reject(self, item: _Item, error: TritonError) -> None:
        self.completion.reject(item, error)


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
