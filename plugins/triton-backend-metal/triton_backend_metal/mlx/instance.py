"""MlxInstance: runs a batch of requests through the model's function on MLX's device.

KIND_GPU runs on MLX's GPU (Metal on Apple silicon, CUDA with MLX's CUDA build),
KIND_CPU on its CPU, KIND_MODEL where MLX puts work by default. Operations of an
imported function stay on the device they were exported for (MLX places them by
the stream recorded in the file); the instance's device holds the inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.errors import TritonError
from triton_core.gather import batch_sizes, gather_input, run_each_on_failure, scatter_output
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

from .function import available, call

log = logging.getLogger("triton_backend_metal.mlx")

_DEVICES = {"KIND_GPU": "gpu", "KIND_CPU": "cpu", "KIND_MODEL": "default"}


class MlxInstance(Instance):
    def __init__(self, model, ctx: InstanceContext) -> None:
        self.model = model
        self.ctx = ctx
        self.device = _DEVICES.get(ctx.kind, "default")
        if self.device != "default":
            reason = available(self.device)
            if reason is not None:
                raise TritonError.unavailable(
                    f"unable to load model '{model.name}', instance '{ctx.name}' ({ctx.kind}): {reason}"
                )
        if ctx.kind == "KIND_GPU" and ctx.device_id != 0:
            raise TritonError.invalid_arg(
                f"model '{model.name}', instance '{ctx.name}': MLX uses one GPU (device 0), "
                f"not GPU {ctx.device_id}"
            )
        cfg = model.config
        self.max_batch_size = cfg.max_batch_size
        self._reshape_in = {i.name: tuple(i.reshape.shape) for i in cfg.input if i.reshape is not None}
        self._reshape_out = {o.name: tuple(o.dims) for o in cfg.output if o.reshape is not None}
        self._output_order = [o.name for o in cfg.output]

    def execute(self, requests: Sequence[InferenceRequest], timer: ExecuteTimer) -> list[InferenceResponse]:
        if not requests:
            return []
        # one batch; if it fails, each request alone (one bad request fails alone)
        return run_each_on_failure(requests, self.max_batch_size > 0,
                                   lambda group: self._run_batch(group, timer), self._error_response)

    def _wanted(self, requests: list[InferenceRequest]) -> list[str]:
        wanted: set[str] = set()
        for r in requests:
            names = r.requested_output_names()
            if names is None:
                return list(self._output_order)
            wanted.update(names)
        unknown = wanted.difference(self._output_order)
        if unknown:
            raise TritonError.invalid_arg(
                f"unexpected inference output '{min(unknown)}' for model '{self.model.name}'"
            )
        return [n for n in self._output_order if n in wanted]

    def _reshape(self, arr: np.ndarray, shape: tuple[int, ...], name: str, kind: str) -> np.ndarray:
        try:
            return arr.reshape(shape)
        except ValueError:
            raise TritonError.invalid_arg(
                f"model '{self.model.name}': {kind} '{name}' of shape {list(arr.shape)} cannot be "
                f"reshaped to {list(shape)}"
            ) from None

    def _error_response(self, r: InferenceRequest, e: TritonError) -> InferenceResponse:
        return InferenceResponse(model_name=r.model_name, model_version=self.model.version, id=r.id,
                                 error=e)

    def _run_batch(self, requests: list[InferenceRequest], timer: ExecuteTimer) -> list[InferenceResponse]:
        model = self.model
        names = self._wanted(requests)
        batching = self.max_batch_size > 0
        sizes = batch_sizes(requests, model.input_order[0]) if batching else [1] * len(requests)
        total = sum(sizes)
        inputs = []
        for name in model.input_order:
            try:
                arr = gather_input(requests, name)
            except (KeyError, ValueError) as e:
                raise TritonError.invalid_arg(
                    f"input '{name}' cannot be batched across requests: {e}"
                ) from None
            if name in self._reshape_in:
                shape = self._reshape_in[name]
                arr = self._reshape(arr, (total, *shape) if batching else shape, name, "input")
            inputs.append((arr, model.input_types[name]))
        timer.compute_start()
        try:
            produced, arrays = call(
                model.function,
                inputs,
                model.output_type_list(names),
                self.device,
                f"MLX failed to run model '{model.name}'",
            )
        finally:
            timer.compute_end()
        per_request: list[dict[str, np.ndarray]] = [{} for _ in requests]
        for name in names:
            arr = arrays[model.output_position[name]]
            if batching:
                if arr.ndim == 0 or arr.shape[0] != total:
                    raise TritonError.internal(
                        f"model '{model.name}': output '{name}' has shape {list(arr.shape)}, expected a "
                        f"first (batch) dimension of {total}"
                    )
                if name in self._reshape_out:
                    arr = self._reshape(arr, (total, *self._reshape_out[name]), name, "output")
                parts = scatter_output(arr, sizes)
            else:
                if name in self._reshape_out:
                    arr = self._reshape(arr, self._reshape_out[name], name, "output")
                parts = [arr]
            for i, part in enumerate(parts):
                per_request[i][name] = part
        responses = []
        for r, outs in zip(requests, per_request, strict=True):
            order = r.requested_output_names() or self._output_order
            responses.append(
                InferenceResponse(
                    model_name=r.model_name,
                    model_version=model.version,
                    id=r.id,
                    outputs=[
                        Tensor.from_numpy(n, outs[n], model.output_types[n]) for n in order if n in outs
                    ],
                )
            )
        return responses

    def close(self) -> None:
        pass
