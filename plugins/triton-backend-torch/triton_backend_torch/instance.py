"""TorchInstance: one loaded module on one device, and execute() over a batch of requests.

Requests the dynamic batcher hands over together run as one batch: each input is gathered
into one array (triton_core.gather), viewed as a tensor without a copy, moved to the
instance's device once, and each output is split back per request. Ragged inputs arrive
flattened into one 1-D tensor, with the config's batch inputs beside them, and batch
outputs are split by their source input's shapes (triton_core.batch_io, Triton's rules).
A batch that fails is retried request by request, so one bad request does not fail the others.

On a GPU, inputs the core hands over in GPU memory (a CUDA shared-memory region:
``Tensor.device_array()``) are taken as they are (``torch.as_tensor`` over their
``__cuda_array_interface__``: no copy on the instance's GPU, a device-to-device copy from
another GPU), and an output requested into a CUDA region is handed back in GPU memory, for
the core to copy device to device.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from triton_core import batch_io
from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.dtypes import DataType
from triton_core.errors import TritonError
from triton_core.gather import batch_sizes, gather_input, run_each_on_failure, scatter_output
from triton_core.memory.cuda_shm import CudaRegionLease
from triton_core.memory.device_array import CudaArray
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

from . import dtypes, sequence
from .devices import placement
from .runner import apply_global_settings

log = logging.getLogger("triton_backend_torch")


@dataclass(frozen=True)
class _Plan:
    datatype: DataType
    shape: tuple[int, ...] | None
    """A config ``reshape``: the shape the model takes / the dims the client sees; None = as is."""
    model_dims: tuple[int, ...] = ()
    """The dims the model sees: ``reshape`` when given, else the config dims."""


def execute_failure(e: BaseException) -> TritonError:
    """A torch exception as Triton's pytorch backend reports it (INTERNAL, its prefix)."""
    text = str(e).strip() or type(e).__name__
    if "Traceback of TorchScript" in text:  # the last line says what went wrong
        text = text.splitlines()[-1].strip()
    return TritonError.internal(f"PyTorch execute failure: {text}")


class TorchInstance(Instance):
    def __init__(self, model, ctx: InstanceContext) -> None:
        self.model = model
        self.ctx = ctx
        self.placement = placement(ctx.kind, ctx.device_id, model.name)
        model.check_device(self.placement)
        self.runner = model.runner(self.placement)
        self.params = model.params
        cfg = model.config
        self.max_batch_size = cfg.max_batch_size
        self.inputs = {io.name: _Plan(io.datatype, tuple(io.reshape.shape) if io.reshape else None)
                       for io in cfg.input}
        self.outputs = {io.name: _Plan(io.datatype, tuple(io.dims) if io.reshape else None,
                                       tuple(io.reshape.shape) if io.reshape else tuple(io.dims))
                        for io in cfg.output}
        self.output_order = [o.name for o in cfg.output]
        self.ragged = batch_io.ragged_inputs(cfg)
        self.config = cfg
        for name, datatype in batch_io.batch_input_datatypes(cfg).items():
            self.inputs.setdefault(name, _Plan(datatype, None))
        self.scatters = batch_io.batch_output_scatters(cfg)
        # Sequence batching: the core adds control and state inputs and takes the state back.
        for t in sequence.inputs(cfg):
            self.inputs.setdefault(t.name, _Plan(t.datatype, None))
        self.state_outputs = [t.name for t in sequence.state_outputs(cfg)]
        for t in sequence.state_outputs(cfg):
            self.outputs.setdefault(t.name, _Plan(t.datatype, None, t.dims))
        self.stream = torch.cuda.Stream(self.placement.device) if self.placement.is_cuda else None
        # per-batch work decided once: each Python step after a forward runs with caches the
        # forward has flushed (measured: ~0.3 ms of interpreter time per batch on the MLP bench)
        self._is_mps = self.placement.is_mps
        self._is_cuda = self.placement.is_cuda
        log.info("model '%s' instance '%s': %s on %s", model.name, ctx.name, model.format.value,
                 self.placement.device or "the model's own devices (KIND_MODEL)")

    # ------------------------------------------------------------------ execute
    def execute(self, requests: Sequence[InferenceRequest], timer: ExecuteTimer
                ) -> list[InferenceResponse]:
        if not requests:
            return []
        # one batch; if it fails, each request alone (one bad request fails alone)
        return run_each_on_failure(requests, self.max_batch_size > 0,
                                   lambda group: self._run_batch(group, timer), self._error)

    def _run_batch(self, requests: list[InferenceRequest], timer: ExecuteTimer) -> list[InferenceResponse]:
        wanted = self._wanted(requests)
        names = list(requests[0].inputs)
        sizes = batch_sizes(requests, names[0]) if self.max_batch_size > 0 and names else [1] * len(requests)
        total = sum(sizes)
        device = self.placement.input_device
        stream_ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with (self.placement.serialize() if self._is_mps else contextlib.nullcontext()), stream_ctx:
            feeds = {name: self._feed(requests, name, total, device) for name in names}
            if self.config.batch_input:
                for name, arr in batch_io.make_batch_inputs(requests, self.config).items():
                    feeds[name] = self._to_device(dtypes.to_tensor(arr, self.inputs[name].datatype), device)
            apply_global_settings(self.params, self._is_cuda)
            if not timer.compute_start_ns:  # a batch retried request by request: the first start
                timer.compute_start()
            try:
                with self.runner.context(self.params):
                    result = self.runner.call(feeds)
                    selected = self.runner.selector.select(result, wanted)
                # the device's work is done before compute ends; copies back are output time
                if self.stream is not None:
                    self.stream.synchronize()
                elif self._is_mps:
                    torch.mps.synchronize()
            except TritonError:
                raise
            except Exception as e:  # noqa: BLE001 - any framework failure fails the batch
                raise execute_failure(e) from None
            finally:
                timer.compute_end()
            # a batch output is split on the host, by its source input's shapes
            on_gpu = self._wanted_on_gpu(requests).difference(self.scatters)
            try:
                gpu = {n: self._on_gpu(n, v, total, sizes) for n, v in selected.items()
                       if n in on_gpu}
                host = {n: self._to_host(n, v, total) for n, v in selected.items()
                        if n not in on_gpu}
                if gpu and self.stream is not None:
                    self.stream.synchronize()  # the core copies them on another stream
            except TritonError:
                raise
            except Exception as e:  # noqa: BLE001
                raise execute_failure(e) from None
        if self.params.cache_cleaning and self._is_cuda:
            torch.cuda.empty_cache()

        per_request: list[dict[str, np.ndarray | Tensor]] = [{} for _ in requests]
        for name, arr in host.items():
            if name in self.scatters:
                parts = self.scatters[name].scatter(arr, requests)
            else:
                parts = scatter_output(arr, sizes) if self.max_batch_size > 0 else [arr]
            for i, part in enumerate(parts):
                per_request[i][name] = part
        for name, dev_parts in gpu.items():
            for i, part in enumerate(dev_parts):
                per_request[i][name] = part
        responses = []
        for r, outs in zip(requests, per_request, strict=True):
            order = [*(r.requested_output_names() or self.output_order), *self.state_outputs]
            tensors = [v if isinstance(v := outs[n], Tensor)
                       else Tensor.from_numpy(n, v, self.outputs[n].datatype)
                       for n in order if n in outs]
            responses.append(InferenceResponse(model_name=r.model_name, model_version=self.model.version,
                                               id=r.id, outputs=tensors))
        return responses

    def _wanted(self, requests: list[InferenceRequest]) -> list[str]:
        wanted: set[str] = set()
        for r in requests:
            names = r.requested_output_names()
            if names is None:
                return [*self.output_order, *self.state_outputs]
            wanted.update(names)
        unknown = wanted.difference(self.outputs)
        if unknown:
            raise TritonError.invalid_arg(
                f"unexpected inference output '{min(unknown)}' for model '{self.model.name}'")
        return [n for n in self.output_order if n in wanted] + self.state_outputs

    def _feed(self, requests: list[InferenceRequest], name: str, total: int, device: torch.device):
        plan = self.inputs.get(name)
        if plan is None:
            raise TritonError.invalid_arg(
                f"unexpected inference input '{name}' for model '{self.model.name}'")
        ragged = name in self.ragged
        if not ragged and device.type == "cuda" and any(
                name in r.inputs and r.inputs[name].device_array() is not None for r in requests):
            return self._feed_gpu(requests, name, plan, total, device)
        try:
            arr = gather_input(requests, name, ragged)
        except (KeyError, ValueError) as e:
            raise TritonError.invalid_arg(f"input '{name}' cannot be batched across requests: {e}") from None
        if plan.shape is not None and not ragged:  # a ragged input stays 1-D, as in Triton
            arr = self._reshape(arr, name, plan, total)
        if plan.datatype is DataType.BYTES:
            return dtypes.to_strings(name, arr)
        return self._to_device(dtypes.to_tensor(arr, plan.datatype), device)

    @staticmethod
    def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        return t if device.type == "cpu" else t.to(device, non_blocking=True)

    def _feed_gpu(self, requests: list[InferenceRequest], name: str, plan: _Plan, total: int,
                  device: torch.device) -> torch.Tensor:
        """Input ``name`` on the instance's GPU, where some request holds it in GPU memory:
        a view of that memory (another GPU's: copied device to device), host parts copied up."""
        parts: list[torch.Tensor] = []
        for r in requests:
            t = r.inputs.get(name)
            if t is None:
                raise TritonError.invalid_arg(
                    f"input '{name}' cannot be batched across requests: a request lacks it")
            dev = t.device_array()
            if dev is not None:
                parts.append(torch.as_tensor(dev, device=device))
            else:
                parts.append(dtypes.to_tensor(t.as_numpy(), plan.datatype).to(device, non_blocking=True))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return out if plan.shape is None else self._reshape(out, name, plan, total)

    def _reshape(self, arr, name: str, plan: _Plan, total: int):
        """``arr`` (a numpy array or a tensor) in the shape the model's config gives ``name``."""
        shape = (total, *plan.shape) if self.max_batch_size > 0 else plan.shape
        try:
            return arr.reshape(shape)
        except (ValueError, RuntimeError):  # numpy's, torch's
            raise TritonError.invalid_arg(
                f"model '{self.model.name}': input '{name}' of shape {list(arr.shape)} cannot be "
                f"reshaped to {list(shape)}") from None

    def _wanted_on_gpu(self, requests: list[InferenceRequest]) -> set[str]:
        """The outputs some request wants in a CUDA shared-memory region (GPU instances)."""
        if not self.placement.is_cuda:
            return set()
        return {ro.name for r in requests for ro in (r.outputs or ())
                if isinstance(ro.shm, CudaRegionLease)
                and self.outputs.get(ro.name, _Plan(DataType.BYTES, None)).datatype
                not in (DataType.BYTES, DataType.BF16)}

    def _on_gpu(self, name: str, value: object, total: int, sizes: list[int]) -> list[Tensor]:
        """Output ``name`` left in GPU memory, one Tensor per request (the core copies each
        into its CUDA region device to device, or to the host for any other destination)."""
        plan = self.outputs[name]
        if not isinstance(value, torch.Tensor):
            raise TritonError.invalid_arg(
                f"configuration expects datatype {plan.datatype.config_name} for output '{name}', "
                "model provides TYPE_STRING")
        got = dtypes.type_name(value.dtype)
        if got != plan.datatype.config_name:
            raise TritonError.invalid_arg(
                f"configuration expects datatype {plan.datatype.config_name} for output '{name}', "
                f"model provides {got}")
        if value.dim() == 0:
            raise TritonError.invalid_arg(f"output '{name}' is a scalar which is not supported.")
        t = value.detach().to(self.placement.device).contiguous()
        if self.max_batch_size > 0:
            if t.shape[0] != total:
                raise TritonError.internal(
                    f"model '{self.model.name}': output '{name}' has shape {list(t.shape)}, expected "
                    f"a first (batch) dimension of {total}")
            if plan.shape is not None:
                t = t.reshape((total, *plan.shape))
            parts = list(torch.split(t, sizes, 0))
        else:
            parts = [t.reshape(plan.shape) if plan.shape is not None else t]
        gpu = self.placement.device.index or 0  # type: ignore[union-attr]
        return [Tensor.from_device(name, plan.datatype, CudaArray.from_interface(p, gpu))
                for p in parts]

    def _to_host(self, name: str, value: object, total: int) -> np.ndarray:
        plan = self.outputs[name]
        if isinstance(value, list):  # List[str]
            if plan.datatype is not DataType.BYTES:
                raise TritonError.invalid_arg(
                    f"configuration expects datatype {plan.datatype.config_name} for output '{name}', "
                    "model provides TYPE_STRING")
            arr = dtypes.from_strings(value)
            if name not in self.scatters:
                arr = self._shape_strings(name, arr, total)
        else:
            t: torch.Tensor = value  # type: ignore[assignment]
            got = dtypes.type_name(t.dtype)
            if got != plan.datatype.config_name:
                raise TritonError.invalid_arg(
                    f"configuration expects datatype {plan.datatype.config_name} for output '{name}', "
                    f"model provides {got}")
            if t.dim() == 0:
                raise TritonError.invalid_arg(f"output '{name}' is a scalar which is not supported.")
            # each torch call costs a dispatch and a GIL round trip: only those needed
            if t.requires_grad:
                t = t.detach()
            if t.device.type != "cpu":
                t = t.to("cpu")
            if not t.is_contiguous():
                t = t.contiguous()
            arr = dtypes.to_numpy(t)
        if name in self.scatters:  # split by its source input's shapes, not by batch size
            return arr
        if self.max_batch_size > 0:
            if arr.ndim == 0 or arr.shape[0] != total:
                raise TritonError.internal(
                    f"model '{self.model.name}': output '{name}' has shape {list(arr.shape)}, expected "
                    f"a first (batch) dimension of {total}")
            if plan.shape is not None:
                arr = arr.reshape((total, *plan.shape))
        elif plan.shape is not None:
            arr = arr.reshape(plan.shape)
        return arr

    def _shape_strings(self, name: str, arr: np.ndarray, total: int) -> np.ndarray:
        """A List[str] output is flat: give it the config's shape (one -1 dim may stay open),
        or the model-side ``reshape`` shape, which the code below turns into the config dims."""
        plan = self.outputs[name]
        model_dims = plan.model_dims
        shape = (total, *model_dims) if self.max_batch_size > 0 else tuple(model_dims)
        if sum(d == -1 for d in shape) > 1 or (not shape and arr.size != 1):
            raise TritonError.invalid_arg(
                f"model '{self.model.name}': output '{name}' is a List[str] of {arr.size} strings; its "
                f"config shape {list(shape)} must have at most one variable dimension to place them")
        try:
            return arr.reshape(shape)
        except ValueError:
            raise TritonError.invalid_arg(
                f"model '{self.model.name}': output '{name}' is a List[str] of {arr.size} strings, "
                f"which does not fit the config shape {list(shape)}") from None

    def _error(self, r: InferenceRequest, e: TritonError) -> InferenceResponse:
        return InferenceResponse(model_name=r.model_name, model_version=self.model.version, id=r.id, error=e)

    def close(self) -> None:
        self.runner = None  # type: ignore[assignment]
        self.model.release(self.placement)
