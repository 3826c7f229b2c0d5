"""The sequence batcher: stateful models (Triton's ``sequence_batching``).

A request names its sequence by correlation id (uint64 or string) and marks
the first and last request with the START / END flags. The core:

- binds each sequence to one instance (least loaded at START) for its whole
  life: every request of it runs there, one at a time, in arrival order;
- ``direct`` (default): an instance holds at most max(1, max_batch_size)
  sequences, each in its own batch slot (the lowest free one); further
  sequences wait for a free slot. A batch covers slots 0 .. the highest slot
  with a request: slots without one (or whose request's shapes differ from
  the lowest slot's) get a padding row, a copy of that request with zeroed
  inputs and state, START / END / READY false and CORRID 0, whose response is
  dropped (Triton's null requests). With ``max_queue_delay_microseconds`` and
  ``minimum_slot_utilization`` both set, a batch waits for that share of the
  slots to have a request, at most the delay;
  ``oldest``: an instance holds up to ``max_candidate_sequences`` and each
  batch takes the next request of the sequences whose next request is oldest
  (waiting up to ``max_queue_delay_microseconds`` to fill a batch);
- adds the control inputs the config asks for (CONTROL_SEQUENCE_START / END /
  READY / CORRID with int32, fp32 or bool false/true values, CORRID in its
  data type) to each request before execute;
- keeps implicit state (``state[]``): before each execute the state tensor
  (the initial state after START) is added as input ``input_name``; after it
  the backend's output ``output_name`` is stored back and removed from the
  response;
- releases a sequence that sees no request for max_sequence_idle_microseconds
  (default 1 s); a later non-START request for it is refused.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..dtypes import DataType
from ..errors import TritonError
from ..request import (
    REQUEST_FLAG_SEQUENCE_END,
    REQUEST_FLAG_SEQUENCE_START,
    InferenceRequest,
    RequestedOutput,
    ResponseSender,
)
from ..tensor import Tensor, element_count
from .clock import MONOTONIC, Clock
from .queue import _Item, shape_key

_KINDS = {
    "CONTROL_SEQUENCE_START": "start",
    "CONTROL_SEQUENCE_END": "end",
    "CONTROL_SEQUENCE_READY": "ready",
    "CONTROL_SEQUENCE_CORRID": "corrid",
}


class _Control:
    __slots__ = ("name", "kind", "values", "datatype")

    def __init__(self, name: str, kind: str, values: tuple[Any, Any] | None, datatype: DataType) -> None:
        self.name = name
        self.kind = kind
        self.values = values
        self.datatype = datatype


class _State:
    __slots__ = ("input_name", "output_name", "datatype", "dims", "initial")

    def __init__(self, spec: dict, where: str, model_path: Path | None = None) -> None:
        try:
            self.input_name = spec["input_name"]
            self.output_name = spec["output_name"]
        except KeyError as e:
            raise TritonError.invalid_arg(f"{where}: sequence_batching.state needs {e.args[0]}") from None
        self.datatype = DataType.from_config(spec.get("data_type", "TYPE_FP32"))
        self.dims = [int(d) for d in spec.get("dims", [])]
        self.initial: np.ndarray | None = None
        for init in spec.get("initial_state", []) or []:
            dims = [int(d) for d in init.get("dims", self.dims)]
            if any(d < 0 for d in dims):
                raise TritonError.invalid_arg(
                    f"{where}: initial_state of state '{self.input_name}' needs fixed dims")
            if init.get("data_file"):
                self.initial = self._from_file(init["data_file"], dims, where, model_path)
            else:
                self.initial = np.zeros(dims, dtype=self.datatype.numpy)

    def _from_file(self, name: str, dims: list[int], where: str,
                   model_path: Path | None) -> np.ndarray:
        """Triton's layout: <model>/initial_state/<data_file>, raw little-endian values."""
        if model_path is None:
            raise TritonError.invalid_arg(f"{where}: initial_state data_file needs the model folder")
        folder = (model_path / "initial_state").resolve()
        path = (folder / name).resolve()
        if not path.is_relative_to(folder):
            raise TritonError.invalid_arg(f"{where}: initial_state data_file '{name}' leaves its folder")
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise TritonError.invalid_arg(
                f"{where}: cannot read initial_state data_file '{path}': {e.strerror}") from None
        if self.datatype is DataType.BYTES:
            return Tensor.from_raw(self.input_name, self.datatype, dims, raw).as_numpy()
        n = element_count(dims) * self.datatype.itemsize
        if len(raw) != n:
            raise TritonError.invalid_arg(
                f"{where}: initial_state data_file '{name}' has {len(raw)} bytes, state "
                f"'{self.input_name}' of dims {dims} needs {n}")
        return np.frombuffer(raw, dtype=self.datatype.numpy).reshape(dims).copy()

    def initial_value(self) -> np.ndarray:
        if self.initial is not None:
            return self.initial
        return np.zeros([max(d, 0) for d in self.dims] or [1], dtype=self.datatype.numpy)


class _Seq:
    __slots__ = ("corrid", "instance", "slot", "pending", "busy", "last_ns", "state", "ended",
                 "released")

    def __init__(self, corrid: int | str, now_ns: int) -> None:
        self.corrid = corrid
        self.instance = -1
        self.slot = -1  # its batch slot on the instance (direct strategy)
        self.pending: collections.deque[_Item] = collections.deque()
        self.busy = False
        self.last_ns = now_ns
        self.state: dict[str, np.ndarray] = {}
        self.ended = False  # END queued: no more requests join this sequence
        self.released = False


def parse_controls(sb: dict, where: str) -> list[_Control]:
    out = []
    for ci in sb.get("control_input", []) or []:
        name = ci.get("name", "")
        for c in ci.get("control", []) or []:
            kind = _KINDS.get(c.get("kind", "CONTROL_SEQUENCE_START"))  # enum 0: omitted
            if kind is None:
                raise TritonError.invalid_arg(
                    f"{where}: unknown sequence batching control kind '{c.get('kind')}'")
            if kind == "corrid":
                dt = DataType.from_config(c.get("data_type", "TYPE_UINT64"))
                out.append(_Control(name, kind, None, dt))
                continue
            if c.get("int32_false_true"):
                vals, dt = c["int32_false_true"], DataType.INT32
            elif c.get("fp32_false_true"):
                vals, dt = c["fp32_false_true"], DataType.FP32
            elif c.get("bool_false_true"):
                vals, dt = c["bool_false_true"], DataType.BOOL
            else:
                raise TritonError.invalid_arg(
                    f"{where}: sequence batching control '{name}' must specify int32_false_true, "
                    "fp32_false_true or bool_false_true")
            if len(vals) != 2:
                raise TritonError.invalid_arg(
                    f"{where}: sequence batching control '{name}' needs exactly 2 false/true values")
            out.append(_Control(name, kind, (vals[0], vals[1]), dt))
    return out


class SequenceScheduler:
    """Routes the requests of each sequence to its instance; the queue of a sequence model."""

    # Capabilities (scheduler.Scheduler): a sequence's requests get control inputs and
    # state (prepare / done), never a fast path.
    stateful = True
    batching = True
    preserve_ordering = False
    fifo = None

    def __init__(self, config: ModelConfig, workers: int, on_reject=None,
                 model_path: Path | None = None, clock: Clock = MONOTONIC) -> None:
        self.clock = clock
        sb = config.sequence_batching or {}
        where = f"model '{config.name}'"
        self.name = config.name
        self.on_reject = on_reject
        self.workers = max(1, workers)
        self.mbs = config.max_batch_size
        self.max_batch = max(1, config.max_batch_size)
        self.oldest = sb.get("oldest") is not None
        strat = (sb.get("oldest") if self.oldest else sb.get("direct")) or {}
        if self.oldest:
            self.slots = int(strat.get("max_candidate_sequences", 0) or 0) or 1 << 30
            self.preferred = sorted(int(p) for p in strat.get("preferred_batch_size", []) or [])
        else:
            self.slots = self.max_batch
            self.preferred = []
        self.delay_ns = int(strat.get("max_queue_delay_microseconds", 0) or 0) * 1000
        self.min_utilization = float(strat.get("minimum_slot_utilization", 0) or 0)
        self.decoupled = config.decoupled
        self.ragged = frozenset(i.name for i in config.input if i.allow_ragged_batch)
        idle = sb.get("max_sequence_idle_microseconds")
        self.idle_ns = int(idle if idle not in (None, 0, "0") else 1_000_000) * 1000
        self.controls = parse_controls(sb, where)
        self.states = [_State(s, where, model_path) for s in sb.get("state", []) or []]
        self.corrid_type = next((c.datatype for c in self.controls if c.kind == "corrid"), None)
        self._cv = threading.Condition(threading.Lock())
        self._closed = False
        self.seqs: dict[int | str, _Seq] = {}
        self.assigned: list[list[_Seq]] = [[] for _ in range(self.workers)]
        self.backlog: collections.deque[_Seq] = collections.deque()
        self._span = [0] * self.workers  # rows (slots) of each instance's current batch
        self._count = 0

    def __len__(self) -> int:
        return self._count

    # producers ---------------------------------------------------------------
    def put(self, req: InferenceRequest, batch_size: int) -> _Item:
        corrid = req.correlation_id
        if corrid in (0, "", None):
            raise TritonError.invalid_arg(
                f"inference request to model '{self.name}' must specify a non-zero or non-empty "
                "correlation ID")
        if self.corrid_type is not None and isinstance(corrid, str) \
                and self.corrid_type is not DataType.BYTES:
            raise TritonError.invalid_arg(
                f"inference request to model '{self.name}' has a string correlation ID but the "
                f"model expects a {self.corrid_type.value} correlation ID")
        start = bool(req.flags & REQUEST_FLAG_SEQUENCE_START)
        end = bool(req.flags & REQUEST_FLAG_SEQUENCE_END)
        item = _Item(req, batch_size, (), self.clock.now_ns())
        with self._cv:
            if self._closed:
                raise TritonError.unavailable(f"model '{self.name}' is unloading")
            seq = self.seqs.get(corrid)
            if seq is None or seq.released:
                if not start:
                    raise TritonError.invalid_arg(
                        f"inference request for sequence {corrid} to model '{self.name}' must "
                        "specify the START flag on the first request of the sequence")
                seq = _Seq(corrid, item.enqueue_ns)
                self.seqs[corrid] = seq
                self._assign(seq)
            item.seq = seq
            seq.pending.append(item)
            seq.last_ns = item.enqueue_ns
            self._count += 1
            if end:
                seq.ended = True
                del self.seqs[corrid]  # a later request must START a new sequence
            self._cv.notify_all()
        return item

    def _assign(self, seq: _Seq) -> None:
        loads = [len(a) for a in self.assigned]
        best = min(range(self.workers), key=lambda i: loads[i])
        if loads[best] < self.slots:
            self._place(seq, best)
        else:
            self.backlog.append(seq)

    def _place(self, seq: _Seq, worker: int) -> None:
        seq.instance = worker
        if not self.oldest:  # the lowest free slot, as Triton hands them out
            used = {s.slot for s in self.assigned[worker]}
            seq.slot = next(i for i in range(self.slots) if i not in used)
        self.assigned[worker].append(seq)

    def remove(self, req: InferenceRequest) -> _Item | None:
        with self._cv:
            for seqs in [*self.assigned, self.backlog]:
                for seq in seqs:
                    for it in seq.pending:
                        if it.request is req:
                            seq.pending.remove(it)
                            self._count -= 1
                            return it
        return None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def drain(self) -> list[_Item]:
        items: list[_Item] = []
        with self._cv:
            for seqs in [*self.assigned, self.backlog]:
                for seq in seqs:
                    items.extend(seq.pending)
                    seq.pending.clear()
            self._count = 0
        return items

    # consumers ---------------------------------------------------------------
    def _release(self, now: int) -> float | None:
        """Free the slots of finished and idle sequences; the seconds until the next idle check."""
        nxt: float | None = None
        for idx, seqs in enumerate(self.assigned):
            keep = []
            for s in seqs:
                if s.busy or s.pending:
                    keep.append(s)
                    continue
                if s.ended or now - s.last_ns >= self.idle_ns:
                    s.released = True
                    if self.seqs.get(s.corrid) is s:
                        del self.seqs[s.corrid]
                    continue
                keep.append(s)
                left = (s.last_ns + self.idle_ns - now) / 1e9
                nxt = left if nxt is None else min(nxt, left)
            self.assigned[idx] = keep
        while self.backlog:
            loads = [len(a) for a in self.assigned]
            best = min(range(self.workers), key=lambda i: loads[i])
            if loads[best] >= self.slots:
                break
            self._place(self.backlog.popleft(), best)
        return nxt

    def take(self, worker: int = 0) -> list[_Item] | None:
        with self._cv:
            deadline = 0
            while True:
                now = self.clock.now_ns()
                wait = self._release(now)
                if not self.oldest:
                    batch, left = self._direct_batch(worker, now)
                    if batch:
                        return batch
                    if left is not None:
                        wait = left if wait is None else min(wait, left)
                    elif self._closed:
                        return None
                    self.clock.wait(self._cv, wait)
                    continue
                ready = [s for s in self.assigned[worker] if s.pending and not s.busy]
                if ready:
                    ready.sort(key=lambda s: s.pending[0].enqueue_ns)
                    n = min(len(ready), self.max_batch)
                    full = n >= self.max_batch or (self.preferred and n in self.preferred)
                    if not deadline:
                        deadline = ready[0].pending[0].enqueue_ns + self.delay_ns
                    if full or now >= deadline or self._closed:
                        batch = []
                        for s in ready[:n]:
                            batch.append(s.pending.popleft())
                            s.busy = True
                        self._count -= len(batch)
                        return batch
                    left = (deadline - now) / 1e9
                    wait = left if wait is None else min(wait, left)
                elif self._closed and not any(s.pending for s in self.assigned[worker]):
                    return None
                self.clock.wait(self._cv, wait)

    def _direct_batch(self, worker: int, now: int) -> tuple[list[_Item] | None, float | None]:
        """The next request of each sequence of the instance, in slot order; or the
        seconds to wait for more slots to fill (None: nothing to wait for)."""
        seqs = sorted((s for s in self.assigned[worker] if s.pending and not s.busy),
                      key=lambda s: s.slot)
        if not seqs:
            return None, None
        if self.delay_ns and self.min_utilization > 0 and not self._closed:
            oldest = min(s.pending[0].enqueue_ns for s in seqs)
            if now - oldest < self.delay_ns and len(seqs) / self.max_batch < self.min_utilization:
                return None, (oldest + self.delay_ns - now) / 1e9
        # Requests whose shapes differ from the lowest slot's wait for a later batch
        # (their slot is padded in this one), as Triton does when shapes must match.
        key = shape_key(seqs[0].pending[0].request, self.mbs > 0, self.ragged)
        batch = []
        for s in seqs:
            if s is seqs[0] or shape_key(s.pending[0].request, self.mbs > 0, self.ragged) == key:
                batch.append(s.pending.popleft())
                s.busy = True
        self._count -= len(batch)
        self._span[worker] = seqs[-1].slot + 1
        return batch, None

    # around execute ------------------------------------------------------------
    def _control_tensor(self, c: _Control, req: InferenceRequest | None) -> Tensor:
        """The control input ``c`` for ``req``; None: a padding row (nothing ready)."""
        shape = [1, 1] if self.mbs > 0 else [1]
        if c.kind == "corrid":
            cid = req.correlation_id if req is not None else 0
            if c.datatype is DataType.BYTES:
                arr = np.array([str(cid).encode() if req is not None else b""],
                               dtype=object).reshape(shape)
            else:
                arr = np.full(shape, int(cid), dtype=c.datatype.numpy)
            return Tensor.from_numpy(c.name, arr, c.datatype)
        if req is None:
            on = False
        elif c.kind == "start":
            on = bool(req.flags & REQUEST_FLAG_SEQUENCE_START)
        elif c.kind == "end":
            on = bool(req.flags & REQUEST_FLAG_SEQUENCE_END)
        else:
            on = True  # READY: every real request reaches execute ready
        assert c.values is not None
        arr = np.full(shape, c.values[1] if on else c.values[0], dtype=c.datatype.numpy)
        return Tensor.from_numpy(c.name, arr, c.datatype)

    def prepare(self, items: Sequence[_Item]) -> list[InferenceRequest]:
        """Add control inputs and implicit state to each request (instance thread);
        the requests to execute: one per slot of the batch, padding included."""
        for it in items:
            req = it.request
            for c in self.controls:
                req.inputs[c.name] = self._control_tensor(c, req)
            seq: _Seq = it.seq
            if req.flags & REQUEST_FLAG_SEQUENCE_START:
                seq.state = {}
            for st in self.states:
                val = seq.state.get(st.input_name)
                if val is None:
                    val = st.initial_value()
                    if self.mbs > 0:
                        val = val.reshape([1, *val.shape])
                req.inputs[st.input_name] = Tensor.from_numpy(st.input_name, val, st.datatype)
            if req.outputs is not None and self.states:
                # The backend must produce the new state even when the client asked for
                # other outputs; done() removes it before the client sees it.
                asked = {o.name for o in req.outputs}
                req.outputs = [*req.outputs, *(RequestedOutput(st.output_name) for st in self.states
                                               if st.output_name not in asked)]
        requests = [it.request for it in items]
        if self.oldest or not items:
            return requests
        span = self._span[items[0].seq.instance]
        if span <= len(items):
            return requests
        rows: list[InferenceRequest | None] = [None] * span
        for it in items:
            rows[it.seq.slot] = it.request
        return [r if r is not None else self._padding(requests[0]) for r in rows]

    def _padding(self, rep: InferenceRequest) -> InferenceRequest:
        """A row for an empty slot: ``rep``'s inputs zeroed, nothing ready, no outputs asked."""
        inputs: dict[str, Tensor] = {}
        for name, t in rep.inputs.items():
            if t.datatype is DataType.BYTES:
                arr = np.full(t.shape, b"", dtype=object)
            else:
                arr = np.zeros(t.shape, dtype=t.datatype.numpy)
            inputs[name] = Tensor.from_numpy(name, arr, t.datatype)
        for c in self.controls:
            inputs[c.name] = self._control_tensor(c, None)
        pad = InferenceRequest(model_name=rep.model_name, model_version=rep.model_version,
                               inputs=inputs, outputs=[])
        if self.decoupled:
            pad.sender = ResponseSender(pad, _drop)
        return pad

    def done(self, items: Sequence[_Item], responses: Sequence[Any]) -> list[Any]:
        """Store the new state from each response; free the sequences for their next request.

        ``responses`` may hold one per slot of a padded batch; the result holds the
        responses of ``items`` only, in their order.
        """
        if len(responses) > len(items):
            responses = [responses[it.seq.slot] for it in items]
        for it, resp in zip(items, responses, strict=False):
            seq: _Seq = it.seq
            if resp is not None and resp.error is None and self.states:
                outs = resp.outputs
                for st in self.states:
                    for t in outs:
                        if t.name == st.output_name:
                            seq.state[st.input_name] = np.array(t.as_numpy(), copy=True)
                            break
                names = {st.output_name for st in self.states}
                resp.outputs = [t for t in outs if t.name not in names]
            for c in self.controls:
                it.request.inputs.pop(c.name, None)
            for st in self.states:
                it.request.inputs.pop(st.input_name, None)
        with self._cv:
            now = self.clock.now_ns()
            for it in items:
                it.seq.busy = False
                it.seq.last_ns = now
            self._cv.notify_all()
        return list(responses)


def _drop(req: InferenceRequest, resp: Any, flags: int) -> None:
    """Where the responses of padding rows go."""
