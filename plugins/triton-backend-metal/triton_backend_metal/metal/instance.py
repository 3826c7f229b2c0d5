"""MetalInstance: one compiled kernel; execute() binds a batch of requests and dispatches it.

``prepare`` (no Metal) turns requests into one ``KernelCall``: the input arrays in
binding order, the output shapes and types, the constants, the grid and the
threadgroup size. ``execute`` hands it to the engine and scatters the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.errors import TritonError
from triton_core.gather import batch_sizes, gather_input, run_each_on_failure, scatter_output
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

from .engine import KernelEngine, OutputSpec
from .launch import LaunchPlan


@dataclass
class KernelCall:
    grid: tuple[int, ...]
    threadgroup: tuple[int, ...] | None
    inputs: list[np.ndarray]
    outputs: list[OutputSpec]
    constants: list[np.ndarray]
    sizes: list[int]
    """Batch size of each request (1 each without batching)."""


def prepare(plan: LaunchPlan, cfg, requests: Sequence[InferenceRequest]) -> KernelCall:
    """The kernel call for ``requests`` (one call for the whole batch)."""
    batching = cfg.max_batch_size > 0
    sizes = batch_sizes(requests, plan.inputs[0]) if batching else [1] * len(requests)
    arrays: list[np.ndarray] = []
    for io in cfg.input:
        try:
            arr = gather_input(requests, io.name)
        except (KeyError, ValueError) as e:
            raise TritonError.invalid_arg(
                f"input '{io.name}' cannot be batched across requests: {e}"
            ) from None
        arrays.append(np.ascontiguousarray(arr, dtype=io.datatype.numpy))
    shapes = plan.all_shapes({io.name: a.shape for io, a in zip(cfg.input, arrays, strict=True)})
    outputs = [OutputSpec(shapes[o.name], o.datatype.numpy) for o in cfg.output]
    if batching:
        total = sum(sizes)
        for o, spec in zip(cfg.output, outputs, strict=True):
            if not spec.shape or spec.shape[0] != total:
                raise TritonError.invalid_arg(
                    f"output '{o.name}' would have shape {list(spec.shape)}, not a first (batch) "
                    f"dimension of {total}"
                )
    return KernelCall(
        grid=plan.grid_size(shapes),
        threadgroup=plan.threadgroup_size(shapes),
        inputs=arrays,
        outputs=outputs,
        constants=plan.constant_arrays(shapes),
        sizes=sizes,
    )


class MetalInstance(Instance):
    def __init__(self, model, ctx: InstanceContext, engine: KernelEngine) -> None:
        self.model = model
        self.ctx = ctx
        if ctx.kind == "KIND_GPU" and ctx.device_id != 0:
            raise TritonError.invalid_arg(
                f"model '{model.name}', instance '{ctx.name}': the Metal engine uses the default GPU "
                f"(device 0), not GPU {ctx.device_id}"
            )
        try:
            self.kernel = engine.compile(model.source, model.kernel.name)
        except ValueError as e:
            raise TritonError.invalid_arg(
                f"unable to load model '{model.name}': the Metal compiler refused "
                f"'{model.model_file.name}': {e}"
            ) from None
        self._output_order = [o.name for o in model.config.output]

    def execute(self, requests: Sequence[InferenceRequest], timer: ExecuteTimer) -> list[InferenceResponse]:
        if not requests:
            return []
        # one batch; if it fails, each request alone (one bad request fails alone)
        return run_each_on_failure(requests, self.model.config.max_batch_size > 0,
                                   lambda group: self._run(group, timer), self._error_response)

    def _error_response(self, r: InferenceRequest, e: TritonError) -> InferenceResponse:
        return InferenceResponse(model_name=r.model_name, model_version=self.model.version, id=r.id,
                                 error=e)

    def _run(self, requests: list[InferenceRequest], timer: ExecuteTimer) -> list[InferenceResponse]:
        model = self.model
        for r in requests:
            wanted = r.requested_output_names() or []
            unknown = [n for n in wanted if n not in self._output_order]
            if unknown:
                raise TritonError.invalid_arg(
                    f"unexpected inference output '{unknown[0]}' for model '{model.name}'"
                )
        call = prepare(model.plan, model.config, requests)
        timer.compute_start()
        try:
            if all(g > 0 for g in call.grid):
                arrays = self.kernel.dispatch(
                    call.grid, call.threadgroup, call.inputs, call.outputs, call.constants
                )
            else:  # nothing to compute: empty outputs
                arrays = [np.zeros(o.shape, o.dtype) for o in call.outputs]
        except TritonError:
            raise
        except Exception as e:  # noqa: BLE001 - the engine's own failure
            raise TritonError.internal(f"Metal dispatch of model '{model.name}' failed: {e}") from None
        finally:
            timer.compute_end()
        per_output = {
            name: (scatter_output(a, call.sizes) if model.config.max_batch_size > 0 else [a])
            for name, a in zip(self._output_order, arrays, strict=True)
        }
        responses = []
        for i, r in enumerate(requests):
            order = r.requested_output_names() or self._output_order
            responses.append(
                InferenceResponse(
                    model_name=r.model_name,
                    model_version=model.version,
                    id=r.id,
                    outputs=[
                        Tensor.from_numpy(n, per_output[n][i], model.config.output_by_name(n).datatype)
                        for n in order
                    ],
                )
            )
        return responses

    def close(self) -> None:
        self.kernel = None
