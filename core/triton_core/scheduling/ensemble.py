"""Ensembles: platform "ensemble" with ``ensemble_scheduling { step [...] }``.

Each step names a composing model (and version, -1 = the newest ready one),
an ``input_map`` {step input: ensemble tensor} and an ``output_map`` {step
output: ensemble tensor}. The steps form a DAG: a step runs as soon as every
tensor it consumes exists, so independent steps run concurrently. The first
failing step ends the request with its error message, after "in ensemble '<name>', "
as Triton words it; the ensemble's own
statistics count each request once, the composing models keep theirs.

A step may be a decoupled model (Triton's rules): each of its responses is a
new *iteration* of its output tensors, and a step downstream runs once per
iteration of its inputs. Every ensemble tensor carries the decoupled step it
descends from (ensemble inputs: none); a step whose inputs descend from
different decoupled steps, or outputs that do, are refused at load. An
ensemble with a decoupled step is itself decoupled (its config says so, as
Triton fills it in): it answers one response per iteration of its outputs,
then the FINAL flag, and is served through streaming only.

With ``response_cache { enable: true }`` and a server cache, an ensemble's final
responses are cached like any model's (cache_use.CachedVersion): a hit runs no
step. Decoupled ensembles and ensembles with a sequence-batched step are not
cached (as Triton: an ensemble inherits its composing models' limits).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..config import ModelConfig
from ..config.model_config import ModelTransactionPolicy
from ..errors import ErrorCode, TritonError, as_triton_error
from ..request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, RequestedOutput
from ..tensor import Tensor
from .cache_use import CachedVersion, next_load_id
from .inflight import InFlight
from .servable import Servable
from .stats import ModelStats
from .validate import normalize_request

log = logging.getLogger("triton_core")


class VersionLookup(Protocol):
    """All an ensemble asks of the model manager: a composing model's ready version (the
    newest for None or -1), or TritonError when there is none."""

    def get(self, name: str, version: int | None = None) -> Servable: ...


class StepGate:
    """max_inflight_requests of one step: at most ``limit`` of its requests in flight. A
    start that finds the step full waits in a queue, and the slot a finishing request frees
    passes to the oldest waiting start; nobody blocks a thread."""

    __slots__ = ("limit", "in_flight", "waiting", "_lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.waiting: collections.deque[Callable[[], None]] = collections.deque()
        self._lock = threading.Lock()

    def enter(self, start_later: Callable[[], None]) -> bool:
        """True: a slot is taken, start now. False: ``start_later`` runs when one frees."""
        with self._lock:
            if self.in_flight < self.limit:
                self.in_flight += 1
                return True
            self.waiting.append(start_later)
            return False

    def leave(self) -> None:
        """A request of the step finished: its slot goes to the next waiting start."""
        with self._lock:
            if not self.waiting:
                self.in_flight -= 1
                return
            start = self.waiting.popleft()
        start()


class Step:
    __slots__ = ("model_name", "model_version", "input_map", "output_map")

    def __init__(self, spec: dict, where: str, index: int) -> None:
        self.model_name = spec.get("model_name", "")
        if not self.model_name:
            raise TritonError.invalid_arg(f"{where}: ensemble step {index} must name a model_name")
        v = int(spec.get("model_version", -1))
        self.model_version = None if v == -1 else v
        self.input_map: dict[str, str] = dict(spec.get("input_map", {}) or {})
        self.output_map: dict[str, str] = dict(spec.get("output_map", {}) or {})


def ensemble_steps(cfg: ModelConfig, where: str) -> list[Step]:
    es = cfg.ensemble_scheduling or {}
    steps = [Step(s, where, i) for i, s in enumerate(es.get("step", []) or [])]
    if not steps:
        raise TritonError.invalid_arg(f"{where}: ensemble must have at least one step")
    return steps


def composing_models(cfg: ModelConfig) -> set[str]:
    es = cfg.ensemble_scheduling or {}
    return {s.get("model_name", "") for s in es.get("step", []) or []}


def check_ensemble(cfg: ModelConfig, where: str, manager: VersionLookup) -> list[Step]:
    """Check the DAG against the ensemble's and the composing models' configs.

    Sets the ensemble's model_transaction_policy: decoupled when a step is.
    """
    steps = ensemble_steps(cfg, where)
    if not cfg.input:
        raise TritonError.invalid_arg(f"{where}: ensemble must specify at least one input")
    if not cfg.output:
        raise TritonError.invalid_arg(f"{where}: ensemble must specify at least one output")
    produced: dict[str, str] = {i.name: "ensemble input" for i in cfg.input}
    decoupled: list[bool] = []
    for i, st in enumerate(steps):
        if st.model_name == cfg.name:
            raise TritonError.invalid_arg(f"{where}: ensemble step {i} refers to the ensemble itself")
        try:
            lv = manager.get(st.model_name, st.model_version)
        except TritonError as e:
            raise TritonError.invalid_arg(
                f"{where}: ensemble step {i}: composing model '{st.model_name}' is not available: "
                f"{e.message}") from None
        mc = lv.config
        decoupled.append(lv.decoupled)
        for step_in in st.input_map:
            if mc.input_by_name(step_in) is None:
                raise TritonError.invalid_arg(
                    f"{where}: ensemble step {i}: model '{st.model_name}' has no input '{step_in}'")
        for step_out, ens_t in st.output_map.items():
            if mc.output_by_name(step_out) is None:
                raise TritonError.invalid_arg(
                    f"{where}: ensemble step {i}: model '{st.model_name}' has no output '{step_out}'")
            if ens_t in produced:
                raise TritonError.invalid_arg(
                    f"{where}: ensemble tensor '{ens_t}' is produced more than once "
                    f"({produced[ens_t]} and step {i})")
            produced[ens_t] = f"step {i}"
    for i, st in enumerate(steps):
        for step_in, ens_t in st.input_map.items():
            if ens_t not in produced:
                raise TritonError.invalid_arg(
                    f"{where}: ensemble step {i} input '{step_in}' consumes tensor '{ens_t}' "
                    "that no ensemble input or step output provides")
    for o in cfg.output:
        if o.name not in produced:
            raise TritonError.invalid_arg(
                f"{where}: ensemble output '{o.name}' is not produced by any step")
    # Every step must be reachable from the ensemble inputs (no cycles). On the way,
    # each tensor gets its lineage: the decoupled step it descends from (0: none).
    lineage = {i.name: 0 for i in cfg.input}
    pending = list(range(len(steps)))
    while pending:
        ready = [i for i in pending if all(t in lineage for t in steps[i].input_map.values())]
        if not ready:
            raise TritonError.invalid_arg(
                f"{where}: ensemble steps {pending} can never run (their inputs form a cycle)")
        for i in ready:
            lines = {lineage[t] for t in steps[i].input_map.values()}
            if len(lines) > 1:
                raise TritonError.invalid_arg(
                    f"{where}: ensemble step {i} (model '{steps[i].model_name}') receives inputs "
                    "that originate from different decoupled models")
            line = i + 1 if decoupled[i] else (lines.pop() if lines else 0)
            lineage.update((t, line) for t in steps[i].output_map.values())
            pending.remove(i)
    if len({lineage[o.name] for o in cfg.output}) > 1:
        raise TritonError.invalid_arg(
            f"{where}: ensemble outputs originate from different decoupled models")
    # As Triton: the ensemble is decoupled exactly when one of its steps is.
    cfg.model_transaction_policy = ModelTransactionPolicy(decoupled=any(decoupled))
    return steps


def _renamed(t: Tensor, name: str) -> Tensor:
    out = Tensor(name, t.datatype, t.shape, array=t._array, raw=t._raw)  # noqa: SLF001
    out._device = t._device  # noqa: SLF001 - a GPU tensor stays on its GPU between steps
    return out


# An outgoing response of the ensemble: (response or None, flags, failure reason).
_Out = tuple[InferenceResponse | None, int, str]


class _Run:
    """One ensemble request in flight.

    Tensors are keyed (name, iteration). Ensemble inputs are iteration 0; a step
    that is not decoupled gives its outputs the iteration of its inputs; each
    response of a decoupled step is the next iteration of that step. A tensor is
    dropped once every step that reads it has started and, for a requested output,
    once it was sent.
    """

    def __init__(self, ens: EnsembleVersion, req: InferenceRequest, batch: int) -> None:
        self.ens = ens
        self.req = req
        self.batch = batch
        self.wanted = req.requested_output_names() or [o.name for o in ens.config.output]
        self.tensors: dict[tuple[str, int], Tensor] = {}
        self.refs: dict[tuple[str, int], int] = {}
        self.started: set[tuple[int, int]] = set()
        self.next_iteration = [0] * len(ens.steps)  # of each decoupled step's next response
        self.running = 0
        self.children: dict[int, tuple[Servable, InferenceRequest]] = {}  # the steps in flight
        self.outbox: collections.deque[_Out] = collections.deque()
        self.delivering = False
        self.lock = threading.Lock()
        self.done = False
        for name, t in req.inputs.items():
            self._add(name, 0, t)

    # state (under self.lock) -------------------------------------------------------
    def _add(self, name: str, iteration: int, t: Tensor) -> None:
        n = len(self.ens.consumers.get(name, ())) + (name in self.wanted)
        if n:
            self.tensors[(name, iteration)] = t
            self.refs[(name, iteration)] = n

    def _release(self, name: str, iteration: int) -> None:
        key = (name, iteration)
        left = self.refs.get(key, 0) - 1
        if left > 0:
            self.refs[key] = left
        else:
            self.refs.pop(key, None)
            self.tensors.pop(key, None)

    def _take_ready(self, steps: Any, iteration: int, out: list) -> None:
        """Claim every step in ``steps`` whose inputs exist at ``iteration``."""
        for j in steps:
            st = self.ens.steps[j]
            if (j, iteration) in self.started or not all(
                    (t, iteration) in self.tensors for t in st.input_map.values()):
                continue
            self.started.add((j, iteration))
            self.running += 1
            inputs = {si: _renamed(self.tensors[(et, iteration)], si) for si, et in st.input_map.items()}
            for et in set(st.input_map.values()):
                self._release(et, iteration)
            out.append((j, iteration, inputs))

    def _outputs_at(self, iteration: int) -> InferenceResponse | None:
        """The response of ``iteration`` when every requested output exists there."""
        if not all((n, iteration) in self.tensors for n in self.wanted):
            return None
        outs = [self.tensors[(n, iteration)] for n in self.wanted]
        for n in self.wanted:
            self._release(n, iteration)
        return InferenceResponse(outputs=outs)

    def _finish_locked(self) -> None:
        """No step runs and none can start: the FINAL response."""
        self.done = True
        if self.ens.decoupled:
            if self.outbox and self.outbox[-1][1] == 0:
                resp, _, _ = self.outbox.pop()  # not sent yet: it carries the flag
                self.outbox.append((resp, RESPONSE_COMPLETE_FINAL, ""))
            else:
                self.outbox.append((None, RESPONSE_COMPLETE_FINAL, ""))
            return
        resp = self._outputs_at(0)
        if resp is None:
            missing = [n for n in self.wanted if (n, 0) not in self.tensors]
            self.outbox.append((InferenceResponse(error=self._named(TritonError.internal(
                f"output '{missing[0]}' was not produced"))), RESPONSE_COMPLETE_FINAL, "BACKEND"))
            return
        self.outbox.append((resp, RESPONSE_COMPLETE_FINAL, ""))

    # flow ----------------------------------------------------------------------------
    def advance(self) -> None:
        """Start the steps the ensemble inputs make ready."""
        ready: list = []
        with self.lock:
            self._take_ready(range(len(self.ens.steps)), 0, ready)
            if self.ens.decoupled:
                out = self._outputs_at(0)  # outputs that are ensemble inputs as they are
                if out is not None:
                    self.outbox.append((out, 0, ""))
            if not ready:
                self._finish_locked()
        self._deliver()
        for j, it, inputs in ready:
            self.start(j, it, inputs)

    def start(self, i: int, iteration: int, inputs: dict[str, Tensor]) -> None:
        """Submit step ``i``, or, with max_inflight_requests and the step full, queue the
        start until a slot frees. Never blocks: this runs in response callbacks, which may
        be on the event loop or a backend's reader thread."""
        gate = self.ens.step_gates[i] if self.ens.step_gates is not None else None
        if gate is None or gate.enter(lambda: self._start(i, iteration, inputs)):
            self._start(i, iteration, inputs)

    def _start(self, i: int, iteration: int, inputs: dict[str, Tensor]) -> None:
        """Submit step ``i`` (its slot, if limited, is held; released on its FINAL)."""
        st = self.ens.steps[i]
        req = self.req
        if req.cancelled:
            self.ens.free_slot(i)
            self.fail(TritonError(ErrorCode.CANCELLED, "request cancelled"), "CANCELED")
            return
        if self.done:  # failed while this start waited for a slot
            self.ens.free_slot(i)
            return
        submitted = False
        try:
            lv = self.ens.manager.get(st.model_name, st.model_version)
            child = InferenceRequest(
                model_name=st.model_name, model_version=st.model_version, id=req.id,
                inputs=inputs, outputs=[RequestedOutput(o) for o in st.output_map],
                parameters=dict(req.parameters), correlation_id=req.correlation_id,
                flags=req.flags, priority=req.priority, timeout_us=req.timeout_us,
            )
            batch = normalize_request(child, lv.config)
            if req.trace is not None:  # the step is traced as a child of the ensemble's trace
                child.trace = req.trace.child(lv.name, lv.version, child.arrival_ns)
            decoupled = bool(lv.decoupled)
            key = id(child)
            child.callback = lambda resp, flags: self.step_done(i, iteration, decoupled, resp, flags, key)
            with self.lock:
                self.children[key] = (lv, child)
            lv.submit(child, batch)
            submitted = True
        except Exception as e:  # noqa: BLE001 - fails the ensemble request
            self.fail(as_triton_error(e, f"ensemble '{self.ens.name}' step {i}"))
        finally:
            if not submitted:
                self.ens.free_slot(i)

    def step_done(self, i: int, iteration: int, decoupled: bool,
                  resp: InferenceResponse | None, flags: int, key: int = 0) -> None:
        if flags & RESPONSE_COMPLETE_FINAL:
            self.ens.free_slot(i)  # the step's request is done, whatever it answered
        if resp is not None and resp.error is not None:
            cancelled = resp.error.code is ErrorCode.CANCELLED
            self.fail(resp.error, "CANCELED" if cancelled else "BACKEND")
            return
        st = self.ens.steps[i]
        ready: list = []
        missing: list[str] = []
        with self.lock:
            if self.done:
                return
            if resp is not None:
                got = {so: resp.output(so) for so in st.output_map}
                missing = [st.output_map[so] for so, t in got.items() if t is None]
                if not missing:
                    it = iteration
                    if decoupled:
                        it = self.next_iteration[i]
                        self.next_iteration[i] += 1
                    for so, t in got.items():
                        et = st.output_map[so]
                        self._add(et, it, _renamed(t, et))  # type: ignore[arg-type]
                        self._take_ready(self.ens.consumers.get(et, ()), it, ready)
                    if self.ens.decoupled:
                        out = self._outputs_at(it)
                        if out is not None:
                            self.outbox.append((out, 0, ""))
            if not missing:
                if flags & RESPONSE_COMPLETE_FINAL:
                    self.running -= 1
                    self.children.pop(key, None)
                if self.running == 0:
                    self._finish_locked()
        if missing:
            self.fail(TritonError.internal(
                f"step model '{st.model_name}' did not produce {missing}"))
            return
        self._deliver()
        for j, it, inputs in ready:
            self.start(j, it, inputs)

    def fail(self, err: TritonError, reason: str = "BACKEND") -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            children = list(self.children.values())
            self.outbox.append((InferenceResponse(error=self._named(err)), RESPONSE_COMPLETE_FINAL,
                                reason))
        for _, c in children:
            c.cancelled = True
        self._deliver()

    def _named(self, err: TritonError) -> TritonError:
        """Triton's wording: an ensemble's error names the ensemble (nested ones each)."""
        return TritonError(err.code, f"in ensemble '{self.ens.name}', {err.message}")

    def cancel(self) -> None:
        """The client gave up: tell the running steps (a queued one fails now)."""
        with self.lock:
            children = list(self.children.values())
        for lv, c in children:
            try:
                lv.cancel(c)
            except Exception as e:  # noqa: BLE001 - the step may be unloading
                log.warning("ensemble '%s': cancelling a step failed: %s", self.ens.name, e)

    def _deliver(self) -> None:
        """Send queued responses in order, one thread at a time (FINAL stays last)."""
        with self.lock:
            if self.delivering:
                return
            self.delivering = True
        while True:
            with self.lock:
                if not self.outbox:
                    self.delivering = False
                    return
                resp, flags, reason = self.outbox.popleft()
            if flags & RESPONSE_COMPLETE_FINAL:
                self.ens.complete(self, resp, reason)
            else:
                self.ens.send(self, resp)


class EnsembleVersion(CachedVersion):
    """A READY ensemble version: a servable.Servable, like a LoadedVersion.

    With ``response_cache { enable: true }`` (and a server cache) the ensemble's
    final responses are cached under its own name and version: a hit answers
    without running any step. Composing models cache (or not) on their own.
    """

    def __init__(self, name: str, version: int, config: ModelConfig, steps: list[Step],
                 manager: VersionLookup) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.steps = steps
        self.manager = manager
        self.load_id = next_load_id()
        self.decoupled = config.decoupled
        # ensemble tensor -> the steps that read it
        self.consumers: dict[str, list[int]] = {}
        for i, st in enumerate(steps):
            for t in dict.fromkeys(st.input_map.values()):
                self.consumers.setdefault(t, []).append(i)
        # ensemble_scheduling.max_inflight_requests: requests in flight at each step,
        # across all ensemble requests (0: no limit); a full step holds its producers'
        # outputs back until a slot frees
        limit = int((config.ensemble_scheduling or {}).get("max_inflight_requests", 0) or 0)
        self.step_gates: list[StepGate] | None = (
            [StepGate(limit) for _ in steps] if limit > 0 else None)
        self.inflight = InFlight()
        self.stats = ModelStats(self.inflight)
        self.accepting = True
        self._runs: dict[int, _Run] = {}
        self._runs_lock = threading.Lock()

    def free_slot(self, i: int) -> None:
        if self.step_gates is not None:
            self.step_gates[i].leave()

    def composing(self) -> set[str]:
        return {s.model_name for s in self.steps}

    def uncacheable(self) -> str:
        """Why the ensemble's responses cannot be cached ('' when they can).

        As Triton: an ensemble inherits the limits of its composing models, so
        neither a decoupled ensemble nor one with a step that keeps state
        (sequence batching) is cached.
        """
        if self.decoupled:
            return "it is decoupled"
        for s in self.steps:
            try:
                lv = self.manager.get(s.model_name, s.model_version)
            except TritonError:
                continue  # checked at load; the ensemble fails its requests meanwhile
            if lv.config.sequence_batching is not None:
                return f"composing model '{s.model_name}' uses sequence batching"
            if isinstance(lv, EnsembleVersion) and (why := lv.uncacheable()):
                return f"composing ensemble '{s.model_name}' cannot be cached: {why}"
        return ""

    def cache_tag(self) -> str:
        """This load and the loads of the composing versions it would run now."""
        tags = [str(self.load_id)]
        for s in self.steps:
            try:
                tags.append(self.manager.get(s.model_name, s.model_version).cache_tag())
            except Exception:  # noqa: BLE001 - not loaded (or changing): nothing is stored
                tags.append("-")
        return ",".join(tags)

    def instances_ready(self) -> bool:
        for s in self.steps:
            try:
                if not self.manager.get(s.model_name, s.model_version).instances_ready():
                    return False
            except TritonError:
                return False
        return True

    def submit(self, req: InferenceRequest, batch_size: int) -> None:
        if not self.accepting:
            raise TritonError.unavailable(f"model '{self.name}' version {self.version} is not ready")
        cache = self.cache
        if cache is not None and self._cache_lookup(cache, req):
            return
        self.inflight.enter()
        run = _Run(self, req, batch_size)
        with self._runs_lock:
            self._runs[id(req)] = run
        run.advance()

    def cancel(self, req: InferenceRequest) -> None:
        req.cancelled = True
        with self._runs_lock:
            run = self._runs.get(id(req))
        if run is not None:
            run.cancel()

    def _label(self, run: _Run, resp: InferenceResponse) -> None:
        resp.model_name, resp.model_version, resp.id = self.name, self.version, run.req.id

    def send(self, run: _Run, resp: InferenceResponse | None) -> None:
        """A response that is not the last (decoupled ensembles)."""
        if resp is not None:
            self._label(run, resp)
        cb = run.req.callback
        if cb is not None:
            try:
                cb(resp, 0)
            except Exception as e:  # noqa: BLE001
                log.error("response callback failed: %s", e)

    def complete(self, run: _Run, resp: InferenceResponse | None, reason: str) -> None:
        req = run.req
        with self._runs_lock:
            self._runs.pop(id(req), None)
        now = time.monotonic_ns()
        total = now - req.arrival_ns
        if resp is None or resp.error is None:
            self.stats.record_execution(batch_size=run.batch, n_requests=1, queue_ns=[0],
                                        request_ns=[total], ok=[True], compute_input_ns=0,
                                        compute_infer_ns=0, compute_output_ns=0)
        else:
            self.stats.record_failure(total, reason or "BACKEND")
        if resp is not None:
            self._label(run, resp)
        trace = req.trace
        if trace is not None:
            req.trace = None
            trace.stamp("REQUEST_START", req.arrival_ns)
            trace.stamp("REQUEST_END", now)
            trace.done()
        cb = req.callback
        if cb is not None:
            try:
                cb(resp, RESPONSE_COMPLETE_FINAL)
            except Exception as e:  # noqa: BLE001
                log.error("response callback failed: %s", e)
        self.inflight.leave()

    def close(self, timeout: float = 30.0) -> None:
        self.accepting = False
        self.inflight.wait_idle(timeout)
