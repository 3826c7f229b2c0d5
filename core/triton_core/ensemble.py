"""Ensembles: platform "ensemble" with ``ensemble_scheduling { step [...] }``.

Each step names a composing model (and version, -1 = the newest ready one),
an ``input_map`` {step input: ensemble tensor} and an ``output_map`` {step
output: ensemble tensor}. The steps form a DAG: a step runs as soon as every
tensor it consumes exists, so independent steps run concurrently. The first
failing step ends the request with its error message; the ensemble's own
statistics count each request once, the composing models keep theirs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .errors import ErrorCode, TritonError
from .inflight import InFlight
from .request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, RequestedOutput
from .stats import ModelStats
from .tensor import Tensor
from .validate import normalize_request

if TYPE_CHECKING:
    from .manager import ModelManager

log = logging.getLogger("triton_core")


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


def check_ensemble(cfg: ModelConfig, where: str, manager: ModelManager) -> list[Step]:
    """Check the DAG against the ensemble's and the composing models' configs."""
    steps = ensemble_steps(cfg, where)
    if not cfg.input:
        raise TritonError.invalid_arg(f"{where}: ensemble must specify at least one input")
    if not cfg.output:
        raise TritonError.invalid_arg(f"{where}: ensemble must specify at least one output")
    produced: dict[str, str] = {i.name: "ensemble input" for i in cfg.input}
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
        if getattr(lv, "decoupled", False):
            raise TritonError.unsupported(
                f"{where}: ensemble step {i}: decoupled composing model '{st.model_name}' is not "
                "supported yet")
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
    # Every step must be reachable from the ensemble inputs (no cycles).
    have = {i.name for i in cfg.input}
    pending = list(range(len(steps)))
    while pending:
        ready = [i for i in pending if all(t in have for t in steps[i].input_map.values())]
        if not ready:
            raise TritonError.invalid_arg(
                f"{where}: ensemble steps {pending} can never run (their inputs form a cycle)")
        for i in ready:
            have.update(steps[i].output_map.values())
            pending.remove(i)
    return steps


def _renamed(t: Tensor, name: str) -> Tensor:
    return Tensor(name, t.datatype, t.shape, array=t._array, raw=t._raw)  # noqa: SLF001


class _Run:
    """One ensemble request in flight."""

    def __init__(self, ens: EnsembleVersion, req: InferenceRequest, batch: int) -> None:
        self.ens = ens
        self.req = req
        self.batch = batch
        self.tensors: dict[str, Tensor] = dict(req.inputs)
        self.started = [False] * len(ens.steps)
        self.running = 0
        self.children: list[InferenceRequest] = []
        self.lock = threading.Lock()
        self.done = False

    def advance(self) -> None:
        to_start = []
        with self.lock:
            if self.done:
                return
            for i, st in enumerate(self.ens.steps):
                if not self.started[i] and all(t in self.tensors for t in st.input_map.values()):
                    self.started[i] = True
                    self.running += 1
                    to_start.append(i)
            finished = self.running == 0 and not to_start
        if finished:
            self.finish()
            return
        for i in to_start:
            self.start(i)

    def start(self, i: int) -> None:
        st = self.ens.steps[i]
        req = self.req
        if req.cancelled:
            self.fail(TritonError(ErrorCode.CANCELLED, "request cancelled"), "CANCELED")
            return
        try:
            lv = self.ens.manager.get(st.model_name, st.model_version)
            child = InferenceRequest(
                model_name=st.model_name, model_version=st.model_version, id=req.id,
                inputs={si: _renamed(self.tensors[et], si) for si, et in st.input_map.items()},
                outputs=[RequestedOutput(o) for o in st.output_map],
                parameters=dict(req.parameters), correlation_id=req.correlation_id,
                flags=req.flags, priority=req.priority, timeout_us=req.timeout_us,
            )
            batch = normalize_request(child, lv.config)
            child.callback = lambda resp, flags, i=i: self.step_done(i, resp, flags)
            with self.lock:
                self.children.append(child)
            lv.submit(child, batch)
        except TritonError as e:
            self.fail(e)
        except Exception as e:  # noqa: BLE001
            log.exception("ensemble '%s' step %d failed", self.ens.name, i)
            self.fail(TritonError.internal(f"{type(e).__name__}: {e}"))

    def step_done(self, i: int, resp: InferenceResponse | None, flags: int) -> None:
        if resp is not None and resp.error is not None:
            self.fail(resp.error)
            return
        if resp is not None:
            with self.lock:
                for step_out, ens_t in self.ens.steps[i].output_map.items():
                    t = resp.output(step_out)
                    if t is not None:
                        self.tensors[ens_t] = _renamed(t, ens_t)
        if not flags & RESPONSE_COMPLETE_FINAL:
            return
        with self.lock:
            self.running -= 1
            missing = [et for so, et in self.ens.steps[i].output_map.items()
                       if et not in self.tensors]
        if missing:
            self.fail(TritonError.internal(
                f"in ensemble '{self.ens.name}', step model '{self.ens.steps[i].model_name}' "
                f"did not produce {missing}"))
            return
        self.advance()

    def fail(self, err: TritonError, reason: str = "BACKEND") -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            children = list(self.children)
        for c in children:
            c.cancelled = True
        self.ens.complete(self, InferenceResponse(error=err), reason)

    def finish(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
        cfg = self.ens.config
        wanted = self.req.requested_output_names() or [o.name for o in cfg.output]
        outs = []
        for n in wanted:
            t = self.tensors.get(n)
            if t is None:
                self.ens.complete(self, InferenceResponse(error=TritonError.internal(
                    f"ensemble '{self.ens.name}' did not produce output '{n}'")), "BACKEND")
                return
            outs.append(t)
        self.ens.complete(self, InferenceResponse(outputs=outs), "")


class EnsembleVersion:
    """A READY ensemble version; the server treats it like a LoadedVersion."""

    decoupled = False
    sequence = False
    cache = None

    def __init__(self, name: str, version: int, config: ModelConfig, steps: list[Step],
                 manager: ModelManager) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.steps = steps
        self.manager = manager
        self.stats = ModelStats()
        self.accepting = True
        self.instances: list[Any] = []
        self.inflight = InFlight()

    def composing(self) -> set[str]:
        return {s.model_name for s in self.steps}

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
        self.inflight.enter()
        with self.stats.lock:
            self.stats.pending += 1
        _Run(self, req, batch_size).advance()

    def cancel(self, req: InferenceRequest) -> None:
        req.cancelled = True

    def complete(self, run: _Run, resp: InferenceResponse, reason: str) -> None:
        req = run.req
        now = time.monotonic_ns()
        total = now - req.arrival_ns
        if resp.error is None:
            self.stats.record_execution(batch_size=run.batch, n_requests=1, queue_ns=[0],
                                        request_ns=[total], ok=[True], compute_input_ns=0,
                                        compute_infer_ns=0, compute_output_ns=0)
        else:
            self.stats.record_failure(total, reason or "BACKEND")
        resp.model_name, resp.model_version, resp.id = self.name, self.version, req.id
        cb = req.callback
        if cb is not None:
            try:
                cb(resp, RESPONSE_COMPLETE_FINAL)
            except Exception as e:  # noqa: BLE001
                log.error("response callback failed: %s", e)
        with self.stats.lock:
            self.stats.pending -= 1
        self.inflight.leave()

    def close(self, timeout: float = 30.0) -> None:
        self.accepting = False
        self.inflight.wait_idle(timeout)
