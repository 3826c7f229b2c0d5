"""Requests -> the values Core ML's Python bridge takes, and its results -> Triton tensors.

Everything here is plain numpy / PIL work and runs on any OS; only the ``predict`` call
between ``Plan.calls`` and ``Plan.responses`` needs Core ML (instance.py).

A plan is made per execute, in the model's batch mode (autocomplete.py):

- none: one call per request, tensors as sent (after a config ``reshape``).
- dimension: the requests' arrays concatenated along the first dimension, cut into
  chunks the model takes (a range's upper bound, or the enumerated first dimensions),
  one call each; outputs concatenated and split back per request.
- list: one sample per batch row, all samples in one ``predict(list)`` call (one call per
  sample for stateful models, each sample with its own state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triton_core.config import ModelConfig
from triton_core.dtypes import DataType
from triton_core.errors import TritonError
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

from . import images
from .autocomplete import DIMENSION, LIST, NONE
from .dtypes import to_config_output, to_model_input
from .shapes import UNBOUNDED, ShapeRule
from .signature import ARRAY, DICTIONARY, DOUBLE, IMAGE, INT64, STRING, Signature, TensorInfo


@dataclass(frozen=True)
class InputPlan:
    name: str
    info: TensorInfo
    config_type: DataType
    reshape: tuple[int, ...] | None
    channels_first: bool


@dataclass(frozen=True)
class OutputPlan:
    name: str
    info: TensorInfo
    config_type: DataType
    labels: tuple = ()
    """Label order of a classifier's probability dictionary."""


@dataclass(frozen=True)
class StatePlan:
    name: str
    """The Core ML state (and the config state's input_name)."""
    output_name: str
    datatype: DataType


@dataclass
class Call:
    """One Core ML predict call: a feature dict, or a list of them (batch prediction)."""

    payload: dict[str, Any] | list[dict[str, Any]]
    states: list[dict[str, np.ndarray]] | None = None
    """Per sample, the state values to write before predicting (stateful models)."""


@dataclass
class _Group:
    """The requests (by index) that one or more calls serve, and how to split the results."""

    indices: list[int]
    sizes: list[int]
    calls: list[Call] = field(default_factory=list)


class FeedBuilder:
    """What a model's config and spec say about feeding it; one per instance."""

    def __init__(self, model: str, version: int, config: ModelConfig, sig: Signature, mode: str,
                 channel_order: str, read_labels: Callable[[str], list[str]] | None = None) -> None:
        self.model = model
        self.version = version
        self.mode = mode
        self.channel_order = channel_order
        self.inputs: dict[str, InputPlan] = {}
        for io in config.input:
            info = sig.inputs[io.name]
            self.inputs[io.name] = InputPlan(io.name, info, io.datatype,
                                             tuple(io.reshape.shape) if io.reshape is not None else None,
                                             io.format == "FORMAT_NCHW")
        self.outputs: dict[str, OutputPlan] = {}
        for out in config.output:
            info = sig.outputs[out.name]
            labels: tuple = ()
            if info.kind == DICTIONARY:
                c = sig.classifier
                if c and c.probabilities_output == out.name and c.labels:
                    labels = c.labels
                elif read_labels is not None and out.label_filename:
                    labels = tuple(read_labels(out.label_filename))
            self.outputs[out.name] = OutputPlan(out.name, info, out.datatype, labels)
        self.output_order = [o.name for o in config.output]
        self.states: list[StatePlan] = []
        for st in (config.sequence_batching or {}).get("state", []) or []:
            info = sig.states.get(st["input_name"])
            if info is not None and info.datatype is not None:
                self.states.append(StatePlan(info.name, st["output_name"], info.datatype))

    # requests -> calls -----------------------------------------------------------------
    def plan(self, requests: Sequence[InferenceRequest]) -> Plan:
        return Plan(self, list(requests))

    def _err(self, msg: str) -> TritonError:
        return TritonError.invalid_arg(f"model '{self.model}': {msg}")

    def arrays(self, r: InferenceRequest) -> tuple[int, dict[str, np.ndarray]]:
        """A request's inputs as arrays of the model's element types; its batch size."""
        # Only the model's inputs are read: sequence control and state inputs are not features.
        out: dict[str, np.ndarray] = {}
        batch = 1
        for name, plan in self.inputs.items():
            t = r.inputs.get(name)
            if t is None:
                if plan.info.optional:
                    continue
                raise self._err(f"expected input '{name}' is missing from the request")
            arr = t.as_numpy()
            if plan.reshape is not None:
                lead = (arr.shape[0],) if self.mode != NONE and arr.ndim else ()
                try:
                    arr = arr.reshape(lead + plan.reshape)
                except ValueError:
                    raise self._err(f"input '{name}' of shape {list(arr.shape)} cannot be reshaped to "
                                    f"{list(lead + plan.reshape)}") from None
            if plan.info.kind == ARRAY:
                arr = to_model_input(name, arr, plan.info.datatype)  # type: ignore[arg-type]
            out[name] = arr
            if self.mode != NONE:
                batch = int(arr.shape[0]) if arr.ndim else 1
        return batch, out

    def sample_value(self, name: str, value: np.ndarray, rule: ShapeRule | None) -> Any:
        """One sample's value of input ``name`` as the bridge takes it (array, PIL image, scalar)."""
        plan = self.inputs[name]
        kind = plan.info.kind
        if kind == ARRAY:
            if rule is not None:
                problem = rule.violation(tuple(value.shape))
                if problem:
                    raise self._err(f"input '{name}': {problem}")
            return np.ascontiguousarray(value)
        if kind == IMAGE:
            assert plan.info.image is not None
            try:
                hwc = images.to_hwc(name, value, plan.info.image, plan.channels_first, self.channel_order)
                return images.to_pil(name, hwc, plan.info.image)
            except TritonError as e:
                raise self._err(e.message) from None
        flat = value.reshape(-1)
        if flat.size != 1:
            raise self._err(f"input '{name}' is a Core ML scalar ({kind}): it takes one element, "
                            f"got {flat.size}")
        item = flat[0]
        if kind == INT64:
            return int(item)
        if kind == DOUBLE:
            return float(item)
        if kind == STRING:
            try:
                return bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise self._err(f"input '{name}': Core ML strings are UTF-8 text") from None
        raise self._err(f"input '{name}' has Core ML type {kind}, which this backend cannot feed")

    # results -> tensors ------------------------------------------------------------------
    def output_value(self, name: str, value: Any) -> np.ndarray:
        """One result of a call as an array in the config's type (a sample, or a whole chunk)."""
        plan = self.outputs[name]
        kind = plan.info.kind
        if kind == DICTIONARY:
            scores = value if isinstance(value, dict) else {}
            try:
                arr = np.array([scores[label] for label in plan.labels], dtype=np.float64)
            except KeyError as e:
                raise TritonError.internal(
                    f"model '{self.model}': Core ML's '{name}' has no score for label {e.args[0]!r}"
                ) from None
            return arr.astype(plan.config_type.numpy)
        if kind == STRING:
            return np.array([str(value).encode("utf-8")], dtype=object)
        if kind == INT64:
            return np.array([int(value)], dtype=np.int64)
        if kind == DOUBLE:
            return np.array([float(value)], dtype=np.float64)
        if kind == IMAGE:
            return images.from_pil(value)
        return to_config_output(np.asarray(value), plan.config_type)


class Plan:
    """The calls for one execute and, once their results are in, the responses."""

    def __init__(self, fb: FeedBuilder, requests: list[InferenceRequest]) -> None:
        self.fb = fb
        self.requests = requests
        self.errors: dict[int, TritonError] = {}
        self.groups: list[_Group] = []
        prepared: list[tuple[int, int, dict[str, np.ndarray]]] = []
        for i, r in enumerate(requests):
            try:
                n, arrays = fb.arrays(r)
                prepared.append((i, n, arrays))
            except TritonError as e:
                self.errors[i] = e
        if fb.mode == DIMENSION:
            self._dimension(prepared)
        else:
            for i, n, arrays in prepared:
                try:
                    self.groups.append(self._per_sample(i, n, arrays))
                except TritonError as e:
                    self.errors[i] = e

    @property
    def calls(self) -> list[Call]:
        return [c for g in self.groups for c in g.calls]

    # none / list ------------------------------------------------------------------------
    def _per_sample(self, i: int, n: int, arrays: dict[str, np.ndarray]) -> _Group:
        fb = self.fb
        r = self.requests[i]
        if fb.mode == NONE:
            rows = [{k: v for k, v in arrays.items()}]
        else:
            rows = [{k: v[j] for k, v in arrays.items()} for j in range(n)]
        samples = [{k: fb.sample_value(k, v, fb.inputs[k].info.rule) for k, v in row.items()}
                   for row in rows]
        if not fb.states:
            payload: dict | list = samples[0] if fb.mode == NONE else samples
            return _Group([i], [n], [Call(payload)])
        calls = []
        for j, sample in enumerate(samples):
            states = {}
            for st in fb.states:
                t = r.inputs.get(st.name)
                if t is None:
                    raise fb._err(f"the state '{st.name}' is missing: stateful Core ML models run under "
                                  "sequence_batching with its state[] entries")
                value = t.as_numpy()
                states[st.name] = np.ascontiguousarray(value if fb.mode == NONE else value[j],
                                                       dtype=st.datatype.numpy)
            calls.append(Call(sample, [states]))
        return _Group([i], [n], calls)

    # dimension --------------------------------------------------------------------------
    def _dimension(self, prepared: list[tuple[int, int, dict[str, np.ndarray]]]) -> None:
        fb = self.fb
        # requests whose rows have the same shapes run together
        buckets: dict[tuple, list[tuple[int, int, dict[str, np.ndarray]]]] = {}
        for item in prepared:
            key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(item[2].items()))
            buckets.setdefault(key, []).append(item)
        for items in buckets.values():
            try:
                rows = {k: v.shape[1:] for k, v in items[0][2].items()}
                for name, shape in rows.items():
                    rule = fb.inputs[name].info.rule
                    assert rule is not None
                    problem = rule.without_first().violation(tuple(shape))
                    if problem:
                        raise fb._err(f"input '{name}' (after the batch dimension): {problem}")
                merged = {k: np.concatenate([it[2][k] for it in items]) if len(items) > 1 else items[0][2][k]
                          for k in rows}
                total = sum(it[1] for it in items)
                group = _Group([it[0] for it in items], [it[1] for it in items])
                start = 0
                for size in self._chunks(total, rows):
                    payload = {k: np.ascontiguousarray(v[start:start + size]) for k, v in merged.items()}
                    group.calls.append(Call(payload))
                    start += size
                self.groups.append(group)
            except TritonError as e:
                for it in items:
                    self.errors[it[0]] = e

    def _chunks(self, total: int, rows: dict[str, tuple]) -> list[int]:
        """Batch sizes every input takes, largest first, summing to ``total``."""
        allowed: set[int] | None = None
        bound = UNBOUNDED
        for name, shape in rows.items():
            rule = self.fb.inputs[name].info.rule
            assert rule is not None
            if rule.enumerated:
                sizes = {s[0] for s in rule.enumerated if tuple(s[1:]) == tuple(shape)}
                allowed = sizes if allowed is None else allowed & sizes
            elif rule.ranges:
                hi = rule.ranges[0][1]
                if hi != UNBOUNDED:
                    bound = hi if bound == UNBOUNDED else min(bound, hi)
        if allowed is None:
            step = total if bound == UNBOUNDED else bound
            return [min(step, total - s) for s in range(0, total, step)]
        if bound != UNBOUNDED:
            allowed = {a for a in allowed if a <= bound}
        out: list[int] = []
        left = total
        for size in sorted(allowed, reverse=True):
            while size <= left:
                out.append(size)
                left -= size
        if left:
            raise self.fb._err(f"a batch of {total} cannot be cut into the batch sizes the Core ML "
                               f"model takes ({', '.join(map(str, sorted(allowed))) or 'none'})")
        return out

    # results ----------------------------------------------------------------------------
    def responses(self, results: Sequence[Any]) -> list[InferenceResponse]:
        """``results``: one per call, in ``calls`` order: a dict, or a list of dicts for a list
        payload; for stateful calls a (dict, {state: value}) pair; a TritonError for a call
        that failed (it fails the requests of that call only)."""
        per_request: dict[int, dict[str, np.ndarray] | TritonError] = dict(self.errors)
        k = 0
        for g in self.groups:
            got = results[k:k + len(g.calls)]
            k += len(g.calls)
            try:
                failed = next((x for x in got if isinstance(x, TritonError)), None)
                if failed is not None:
                    raise failed
                per_request.update(self._split(g, got))
            except TritonError as e:
                for i in g.indices:
                    per_request[i] = e
        return [self._response(r, per_request[i]) for i, r in enumerate(self.requests)]

    def _response(self, r: InferenceRequest, value: dict[str, np.ndarray] | TritonError
                  ) -> InferenceResponse:
        fb = self.fb
        if isinstance(value, TritonError):
            return InferenceResponse(model_name=r.model_name, model_version=fb.version, id=r.id,
                                     error=value)
        wanted = r.requested_output_names()
        order = list(wanted) if wanted is not None else list(fb.output_order)
        order += [s.output_name for s in fb.states if s.output_name not in order]
        state_types = {s.output_name: s.datatype for s in fb.states}
        tensors = []
        for name in order:
            if name not in value:
                return InferenceResponse(
                    model_name=r.model_name, model_version=fb.version, id=r.id,
                    error=TritonError.invalid_arg(
                        f"unexpected inference output '{name}' for model '{fb.model}'"))
            dt = fb.outputs[name].config_type if name in fb.outputs else state_types[name]
            tensors.append(Tensor.from_numpy(name, value[name], dt))
        return InferenceResponse(model_name=r.model_name, model_version=fb.version, id=r.id,
                                 outputs=tensors)

    def _split(self, g: _Group, got: Sequence[Any]) -> dict[int, dict[str, np.ndarray]]:
        fb = self.fb
        if fb.mode == DIMENSION:
            merged = {name: np.concatenate([fb.output_value(name, res[name]) for res in got])
                      if len(got) > 1 else fb.output_value(name, got[0][name]) for name in fb.outputs}
            total = sum(g.sizes)
            result: dict[int, dict[str, np.ndarray]] = {i: {} for i in g.indices}
            for name, arr in merged.items():
                if arr.ndim == 0 or arr.shape[0] != total:
                    raise TritonError.internal(
                        f"model '{fb.model}': Core ML output '{name}' has shape {list(arr.shape)}, "
                        f"expected a first (batch) dimension of {total}")
                bounds = np.cumsum(g.sizes)[:-1]
                for i, part in zip(g.indices, np.split(arr, bounds), strict=True):
                    result[i][name] = part
            return result
        (i,) = g.indices
        if fb.states:
            samples = [res[0] for res in got]
            states = [res[1] for res in got]
        else:
            samples = got[0] if fb.mode == LIST else [got[0]]
            states = []
        if not isinstance(samples, list) or (fb.mode == LIST and len(samples) != g.sizes[0]):
            raise TritonError.internal(f"model '{fb.model}': Core ML returned "
                                       f"{len(samples) if isinstance(samples, list) else 'no'} results "
                                       f"for {g.sizes[0]} samples")
        values: dict[str, np.ndarray] = {}
        for name in fb.outputs:
            rows = [fb.output_value(name, s[name]) for s in samples]
            values[name] = rows[0] if fb.mode == NONE else np.stack(rows)
        for st in fb.states:
            rows = [np.asarray(s[st.name]).astype(st.datatype.numpy, copy=False) for s in states]
            values[st.output_name] = rows[0] if fb.mode == NONE else np.stack(rows)
        return {i: values}
