"""Parsed request headers, reused: clients such as perf_analyzer send the same JSON header
with every request, only the binary tensor data after it changes.

A header whose inputs are all binary, fixed-size data or in shared memory (no JSON data,
no binary BYTES) is parsed and checked once per model; later requests with the same header bytes
skip json.loads and the checks (about 10 us of the event loop's ~150 us per request).
"""

from __future__ import annotations

from typing import Any

from ...dtypes import DataType
from ...request import InferenceRequest, RequestedOutput
from ...tensor import Tensor
from .infer import SHM_KEYS

MAX_HEADER = 4096  # bytes: larger headers are parsed each time
MAX_PLANS = 256  # per server; the oldest is dropped


class RequestPlan:
    __slots__ = ("inputs", "total", "outputs", "binary_default", "params", "rid")

    def __init__(self, inputs: list[tuple[str, DataType, tuple[int, ...], int]], total: int,
                 outputs: list[RequestedOutput] | None, binary_default: bool,
                 params: dict[str, Any], rid: str) -> None:
        self.inputs = inputs
        self.total = total
        self.outputs = outputs
        self.binary_default = binary_default
        self.params = params
        self.rid = rid

    def build(self, model: str, version: int | None, binary: memoryview, shm: Any = None
              ) -> InferenceRequest | None:
        """The request for these bytes; None when they do not fit (a full parse says why)."""
        if len(binary) != self.total:
            return None
        inputs: dict[str, Tensor] = {}
        off = 0
        for name, dt, shape, size in self.inputs:
            if type(size) is dict:  # in shared memory: looked up now, as parse_request does
                if shm is None:
                    return None
                inputs[name] = shm.input_tensor(name, dt, list(shape), dict(size), model)
                continue
            end = off + size
            inputs[name] = Tensor(name, dt, shape, raw=binary[off:end])
            off = end
        outs = self.outputs
        req = InferenceRequest(model_name=model, model_version=version, id=self.rid, inputs=inputs,
                               outputs=None if outs is None else list(outs),
                               parameters=dict(self.params) if self.params else {})
        return req


def plan_of(header: dict[str, Any], req: InferenceRequest, binary_default: bool) -> RequestPlan | None:
    """A plan for a header that parse_request accepted, or None when it cannot be reused."""
    if req.correlation_id or req.flags or req.priority or req.timeout_us:
        return None  # sequence, priority and timeout requests: parsed each time
    inputs: list[tuple[str, DataType, tuple[int, ...], Any]] = []
    total = 0
    for inp in header["inputs"]:
        p = inp.get("parameters") or {}
        t = req.inputs[inp["name"]]
        if "shared_memory_region" in p and p.keys() <= SHM_KEYS:
            inputs.append((t.name, t.datatype, t.shape, dict(p)))
            continue
        if "binary_data_size" not in p or len(p) != 1:
            return None
        if t.datatype is DataType.BYTES or t.datatype is DataType.BF16:
            return None
        size = p["binary_data_size"]
        inputs.append((t.name, t.datatype, t.shape, size))
        total += size
    if req.outputs is not None and any(
            o.parameters.keys() - SHM_KEYS - {"binary_data"} for o in req.outputs):
        return None  # classification outputs: parsed each time
    return RequestPlan(inputs, total, req.outputs, binary_default, dict(req.parameters), req.id)


class RequestPlans:
    """Plans by (model, version, header bytes)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str | None, bytes], RequestPlan | None] = {}

    def get(self, key: tuple[str, str | None, bytes]) -> RequestPlan | None:
        return self._plans.get(key)

    def put(self, key: tuple[str, str | None, bytes], plan: RequestPlan | None) -> None:
        if plan is None:
            return
        plans = self._plans
        if len(plans) >= MAX_PLANS:
            del plans[next(iter(plans))]
        plans[key] = plan
