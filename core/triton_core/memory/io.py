"""Protocol-neutral use of registered system and CUDA shared memory for inputs and outputs.

Output regions are resolved when the request is accepted (``bind_outputs``,
as Triton does while parsing the request): each requested output naming a
region gets a lease on that region for the request's lifetime, and the
response is written through it -- never through whatever the name means at
completion, which another client may have re-registered meanwhile.
"""

from __future__ import annotations

from typing import Any

from ..dtypes import DataType
from ..errors import TritonError
from ..request import InferenceRequest, RequestedOutput
from ..tensor import Tensor, element_count
from .cuda_shm import CudaRegionLease, CudaSharedMemoryRegistry
from .device_array import CudaArray
from .registry import RegionLease, SystemSharedMemoryRegistry


def _count(params: dict[str, Any], key: str, what: str, required: bool) -> int:
    v = params.get(key)
    if v is None:
        if required:
            raise TritonError.invalid_arg(f"'{key}' is required with 'shared_memory_region' for {what}")
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TritonError.invalid_arg(f"'{key}' for {what} must be a non-negative integer")
    return v


class SharedMemoryIO:
    """Reads inputs from and writes outputs to registered regions. Inputs are copied out
    (pread): a view would let a client that truncates its object crash the server while a
    model reads it."""

    def __init__(self, registry: SystemSharedMemoryRegistry,
                 cuda: CudaSharedMemoryRegistry | None = None) -> None:
        self.registry = registry
        self.cuda = cuda

    def _holder(self, region: str) -> SystemSharedMemoryRegistry | CudaSharedMemoryRegistry:
        """The registry that holds ``region`` (one namespace for both kinds, as Triton's)."""
        if self.cuda is not None and region in self.cuda:
            return self.cuda
        return self.registry

    def input_tensor(self, name: str, dt: DataType, shape: list[int], params: dict[str, Any],
                     model: str = "") -> Tensor:
        what = f"input '{name}'"
        region = params.get("shared_memory_region")
        if not isinstance(region, str):
            raise TritonError.invalid_arg(f"'shared_memory_region' for {what} must be a string")
        size = _count(params, "shared_memory_byte_size", what, True)
        offset = _count(params, "shared_memory_offset", what, False)
        if dt is not DataType.BYTES:
            expected = element_count(shape) * dt.itemsize
            if size != expected:
                # Triton's words (clients match on them), then ours
                raise TritonError.invalid_arg(
                    f"input byte size mismatch for input '{name}' for model '{model}'. Expected "
                    f"{expected}, got {size} (shared_memory_byte_size, for shape {shape} of "
                    f"{dt.value})")
        holder = self._holder(region)
        if holder is self.cuda and dt is not DataType.BYTES and dt is not DataType.BF16:
            # a view of the device memory, under the region's lease for the tensor's life: a
            # GPU instance reads it in place, any other gets a host copy (Tensor.to_host)
            lease = self.cuda.acquire(region)
            try:  # checked at every size: an empty input at a bad offset is refused too
                ptr = lease.device_pointer(offset, size)
            except BaseException:
                lease.release()
                raise
            array = CudaArray(ptr, shape, dt.numpy, lease.device_id, lease, lease.runtime,
                              (lease.ipc_handle, offset))
            return Tensor.from_device(name, dt, array)
        # a copy, not a view: the client may truncate its object while the model runs
        data = holder.read(region, offset, size)
        return Tensor.from_raw(name, dt, shape, data)

    def bind_outputs(self, req: InferenceRequest) -> None:
        """Lease the region of each requested output that names one (at acceptance).

        The leased outputs are fresh RequestedOutput objects: the ones parsed
        may be shared with a cached request plan. The leases end with the request.
        """
        if req.outputs is None:
            return
        bound: list[RequestedOutput] = []
        for ro in req.outputs:
            region = ro.parameters.get("shared_memory_region")
            if region is None:
                bound.append(ro)
                continue
            what = f"output '{ro.name}'"
            if not isinstance(region, str):
                raise TritonError.invalid_arg(f"'shared_memory_region' for {what} must be a string")
            size = _count(ro.parameters, "shared_memory_byte_size", what, True)
            offset = _count(ro.parameters, "shared_memory_offset", what, False)
            lease = self._holder(region).acquire(region)
            lease.check(offset, size)
            bound.append(RequestedOutput(ro.name, ro.parameters, lease))
        req.outputs = bound

    @staticmethod
    def _check_room(what: str, size: int, n: int) -> None:
        if n > size:
            raise TritonError.invalid_arg(
                f"shared memory size specified with the request for {what} ({size} bytes) should "
                f"be at least {n} bytes to hold the results")

    def write_output(
        self, tensor: Tensor, params: dict[str, Any],
        lease: RegionLease | CudaRegionLease | None = None
    ) -> dict[str, Any]:
        """Copy the output into its region; returns the response's output parameters.

        ``lease``: the region bound at acceptance (bind_outputs); without one
        the region is looked up by name now.
        """
        what = f"output '{tensor.name}'"
        region = params.get("shared_memory_region")
        if not isinstance(region, str):
            raise TritonError.invalid_arg(f"'shared_memory_region' for {what} must be a string")
        size = _count(params, "shared_memory_byte_size", what, True)
        offset = _count(params, "shared_memory_offset", what, False)
        if lease is None:
            lease = self._holder(region).acquire(region)
        device = tensor.device_array()
        if device is not None and isinstance(lease, CudaRegionLease):
            n = device.nbytes  # GPU to GPU: the output never visits the host
            self._check_room(what, size, n)
            lease.write_from_device(offset, device.ptr, n)
        else:
            raw = tensor.to_bytes()
            n = len(raw)
            self._check_room(what, size, n)
            lease.write(offset, memoryview(raw).cast("B") if not isinstance(raw, bytes) else raw)
        out = {"shared_memory_region": region, "shared_memory_byte_size": n}
        if offset:
            out["shared_memory_offset"] = offset
        return out
