"""OnnxInstance: one onnxruntime InferenceSession, and execute() over a batch of requests."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triton_core import batch_io
from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.gather import batch_sizes, gather_input, run_each_on_failure, scatter_output
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

from . import dtypes, errors
from .providers import plan_providers

log = logging.getLogger("triton_backend_onnx")


@dataclass(frozen=True)
class _InputPlan:
    datatype: DataType
    session_shape: tuple[int, ...] | None
    """Shape ORT wants without the batch dim (config reshape, or () for a model scalar); None = as sent."""


@dataclass(frozen=True)
class _OutputPlan:
    datatype: DataType
    dims: tuple[int, ...] | None
    """Config dims to report when ORT's shape differs (reshape, model scalar); None = as produced."""


def _control_datatype(control: dict) -> DataType:
    if "fp32_false_true" in control:
        return DataType.FP32
    if "bool_false_true" in control:
        return DataType.BOOL
    if control.get("data_type"):  # CONTROL_SEQUENCE_CORRID
        return DataType.from_config(control["data_type"])
    return DataType.INT32


def sequence_inputs(cfg) -> list[tuple[str, DataType]]:
    """Control inputs and implicit-state inputs the sequence batcher adds to requests."""
    sb = cfg.sequence_batching or {}
    out = []
    for ci in sb.get("control_input", []) or []:
        controls = ci.get("control", []) or [{}]
        out.append((ci["name"], _control_datatype(controls[0])))
    for st in sb.get("state", []) or []:
        out.append((st["input_name"], DataType.from_config(st.get("data_type", "TYPE_INVALID"))))
    return out


def sequence_state_outputs(cfg) -> list[tuple[str, DataType]]:
    sb = cfg.sequence_batching or {}
    return [(st["output_name"], DataType.from_config(st.get("data_type", "TYPE_INVALID")))
            for st in sb.get("state", []) or []]


class _Timer:
    """Marks compute start once (first run) and compute end after every run (the last one wins)."""

    def __init__(self, timer: ExecuteTimer) -> None:
        self.timer = timer
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.timer.compute_start()
            self.started = True

    def end(self) -> None:
        self.timer.compute_end()


class OnnxInstance(Instance):
    def __init__(self, model, ctx: InstanceContext) -> None:
        import onnxruntime as ort

        self.model = model
        self.ctx = ctx
        cfg = model.config
        self.max_batch_size = cfg.max_batch_size
        plan = plan_providers(
            cfg,
            model.name,
            ctx.kind,
            ctx.device_id,
            ort.get_available_providers(),
            model.strict_providers,
        )
        so = model.session_settings.session_options()
        try:
            self.session = ort.InferenceSession(str(model.model_file), so, **plan.session_kwargs())
        except Exception as e:  # noqa: BLE001
            raise errors.from_ort(
                e,
                f"unable to load model '{model.name}', instance '{ctx.name}': onnxruntime "
                f"cannot create a session from '{model.model_file}'",
                ErrorCode.INVALID_ARG,
            ) from None
        self.providers = list(self.session.get_providers())
        plan.check_session(self.providers, model.name, ctx.name)
        log.info(
            "model '%s' instance '%s' (%s, device %d): providers %s",
            model.name, ctx.name, ctx.kind, ctx.device_id, ", ".join(self.providers),
        )
        self.run_options = model.session_settings.run_options()

        sig = model.signature
        self._inputs: dict[str, _InputPlan] = {}
        for io in cfg.input:
            t = sig.inputs.get(io.name) or sig.overridable.get(io.name)
            shape: tuple[int, ...] | None = None
            if io.reshape is not None:
                shape = tuple(io.reshape.shape)
            elif t is not None and len(t.dims) == 0:
                shape = ()
            self._inputs[io.name] = _InputPlan(io.datatype, shape)
        self._outputs: dict[str, _OutputPlan] = {}
        for io in cfg.output:
            t = sig.outputs.get(io.name)
            reshaped = io.reshape is not None or (t is not None and len(t.dims) == 0)
            self._outputs[io.name] = _OutputPlan(io.datatype, tuple(io.dims) if reshaped else None)
        self._output_order = [o.name for o in cfg.output]
        # Sequence batching: the core adds control inputs and implicit state as inputs
        # and takes the state outputs back (Triton's onnxruntime backend does the same).
        for name, dt in sequence_inputs(cfg):
            self._inputs.setdefault(name, _InputPlan(dt, None))
        self._state_outputs: list[str] = []
        for name, dt in sequence_state_outputs(cfg):
            self._outputs.setdefault(name, _OutputPlan(dt, None))
            self._state_outputs.append(name)
        # Ragged batching (triton_core.batch_io, Triton's rules): ragged inputs as one 1-D
        # array, batch inputs the core makes from the batch, outputs split by an input's shape
        self._config = cfg
        self._ragged = batch_io.ragged_inputs(cfg)
        self._batch_inputs = batch_io.batch_input_datatypes(cfg)
        self._scatters = batch_io.batch_output_scatters(cfg)
        self._has_string_input = any(p.datatype is DataType.BYTES for p in self._inputs.values())

    # ------------------------------------------------------------------ execute
    def execute(
        self, requests: Sequence[InferenceRequest], timer: ExecuteTimer
    ) -> list[InferenceResponse]:
        if not requests:
            return []
        t = _Timer(timer)
        # one batch; if it fails, each request alone (one bad request fails alone)
        return run_each_on_failure(requests, self.max_batch_size > 0,
                                   lambda group: self._run_batch(group, t), self._error_response)

    def _run_batch(self, requests: list[InferenceRequest], t: _Timer) -> list[InferenceResponse]:
        names = self._wanted_outputs(requests)
        feeds, sizes = self._gather(requests)
        arrays = self._run(names, feeds, t)
        total = sum(sizes)
        per_request: list[dict[str, np.ndarray]] = [{} for _ in requests]
        for name, arr in zip(names, arrays, strict=True):
            plan = self._outputs[name]
            arr = dtypes.from_session_output(arr, plan.datatype)
            if name in self._scatters:  # split by its source input's shapes, not by batch size
                parts = self._scatters[name].scatter(arr, requests)
            elif self.max_batch_size > 0:
                if arr.ndim == 0 or arr.shape[0] != total:
                    raise TritonError.internal(
                        f"model '{self.model.name}': output '{name}' has shape {list(arr.shape)}, "
                        f"expected a first (batch) dimension of {total}"
                    )
                if plan.dims is not None:
                    arr = self._reshape(arr, (total, *plan.dims), name, "output")
                parts = scatter_output(arr, sizes)
            else:
                if plan.dims is not None:
                    arr = self._reshape(arr, plan.dims, name, "output")
                parts = [arr]
            for i, part in enumerate(parts):
                per_request[i][name] = part

        responses = []
        for r, outs in zip(requests, per_request, strict=True):
            wanted = r.requested_output_names()
            order = wanted if wanted is not None else self._output_order
            if self._state_outputs:
                order = [*order, *self._state_outputs]
            tensors = [Tensor.from_numpy(n, outs[n], self._outputs[n].datatype) for n in order if n in outs]
            responses.append(
                InferenceResponse(
                    model_name=r.model_name,
                    model_version=self.model.version,
                    id=r.id,
                    outputs=tensors,
                )
            )
        return responses

    def _wanted_outputs(self, requests: list[InferenceRequest]) -> list[str]:
        wanted: set[str] = set()
        for r in requests:
            names = r.requested_output_names()
            if names is None:
                return list(self._output_order) + self._state_outputs
            wanted.update(names)
        wanted.update(self._state_outputs)
        unknown = wanted.difference(self._outputs)
        if unknown:
            raise TritonError.invalid_arg(
                f"unexpected inference output '{min(unknown)}' for model "
                f"'{self.model.name}'"
            )
        return [n for n in self._output_order if n in wanted] + self._state_outputs

    def _gather(self, requests: list[InferenceRequest]) -> tuple[dict[str, object], list[int]]:
        names = [n for n in requests[0].inputs if n in self._inputs]
        unknown = [n for n in requests[0].inputs if n not in self._inputs]
        if unknown:
            raise TritonError.invalid_arg(
                f"unexpected inference input '{unknown[0]}' for model '{self.model.name}'"
            )
        if self.max_batch_size > 0 and names:
            sizes = batch_sizes(requests, names[0])
        else:
            sizes = [1] * len(requests)
        feeds: dict[str, object] = {}
        for name in names:
            plan = self._inputs[name]
            ragged = name in self._ragged
            try:
                arr = gather_input(requests, name, ragged)
            except (KeyError, ValueError) as e:
                raise TritonError.invalid_arg(
                    f"input '{name}' cannot be batched across requests: {e}"
                ) from None
            if plan.datatype not in (DataType.BYTES, DataType.BF16) and arr.dtype != plan.datatype.numpy:
                raise TritonError.invalid_arg(
                    f"input '{name}' of model '{self.model.name}': expected {plan.datatype.value}, "
                    f"got numpy {arr.dtype}"
                )
            if plan.session_shape is not None and not ragged:  # a ragged input stays 1-D
                shape = plan.session_shape
                if self.max_batch_size > 0:
                    shape = (sum(sizes), *shape)
                arr = self._reshape(arr, shape, name, "input")
            if plan.datatype is DataType.BF16:
                feeds[name] = dtypes.bf16_ortvalue(arr)
            else:
                feeds[name] = dtypes.to_session_input(name, arr, plan.datatype)
        if self._batch_inputs:
            for name, arr in batch_io.make_batch_inputs(requests, self._config).items():
                feeds[name] = dtypes.to_session_input(name, arr, self._batch_inputs[name])
        return feeds, sizes

    def _reshape(self, arr: np.ndarray, shape: Sequence[int], name: str, kind: str) -> np.ndarray:
        try:
            return arr.reshape(tuple(shape))
        except ValueError:
            raise TritonError.invalid_arg(
                f"model '{self.model.name}': {kind} '{name}' of shape {list(arr.shape)} cannot be "
                f"reshaped to {list(shape)}"
            ) from None

    def _run(self, names: list[str], feeds: dict[str, object], t: _Timer) -> list[np.ndarray]:
        import onnxruntime as ort

        bf16_out = any(self._outputs[n].datatype is DataType.BF16 for n in names)
        if bf16_out and self._has_string_input:
            raise TritonError.unsupported(
                f"model '{self.model.name}': onnxruntime's Python API cannot run a model with "
                "string inputs and bfloat16 outputs"
            )
        prefix = f"onnxruntime failed to run model '{self.model.name}'"
        t.start()
        try:
            if not bf16_out:
                result = self.session.run(names, feeds, self.run_options)
            else:
                values = {
                    k: v if isinstance(v, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(v)
                    for k, v in feeds.items()
                }
                outs = self.session.run_with_ort_values(names, values, self.run_options)
                result = [
                    dtypes.bf16_from_ortvalue(v)
                    if self._outputs[n].datatype is DataType.BF16
                    else v.numpy()
                    for n, v in zip(names, outs, strict=True)
                ]
        except TritonError:
            raise
        except Exception as e:  # noqa: BLE001
            raise errors.from_ort(e, prefix) from None
        finally:
            t.end()
        return list(result)

    def _error_response(self, r: InferenceRequest, e: TritonError) -> InferenceResponse:
        return InferenceResponse(
            model_name=r.model_name, model_version=self.model.version, id=r.id, error=e
        )

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
