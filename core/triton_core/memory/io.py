"""Protocol-neutral use of registered system shared memory for inputs and outputs."""

from __future__ import annotations

from typing import Any

from ..dtypes import DataType
from ..errors import TritonError
from ..tensor import Tensor, element_count
from .registry import SystemSharedMemoryRegistry


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
    """Reads inputs from and writes outputs to registered regions (no copy on input)."""

    def __init__(self, registry: SystemSharedMemoryRegistry) -> None:
        self.registry = registry

    def input_tensor(self, name: str, dt: DataType, shape: list[int], params: dict[str, Any]) -> Tensor:
        what = f"input '{name}'"
        region = params.get("shared_memory_region")
        if not isinstance(region, str):
            raise TritonError.invalid_arg(f"'shared_memory_region' for {what} must be a string")
        size = _count(params, "shared_memory_byte_size", what, True)
        offset = _count(params, "shared_memory_offset", what, False)
        if dt is not DataType.BYTES:
            expected = element_count(shape) * dt.itemsize
            if size != expected:
                raise TritonError.invalid_arg(
                    f"input byte size mismatch for {what}: shared_memory_byte_size is {size}, "
                    f"expected {expected} bytes for shape {shape} of {dt.value}")
        view = self.registry.view(region, offset, size)
        return Tensor.from_raw(name, dt, shape, view)

    def write_output(self, tensor: Tensor, params: dict[str, Any]) -> dict[str, Any]:
        """Copy the output into its region; returns the response's output parameters."""
        what = f"output '{tensor.name}'"
        region = params.get("shared_memory_region")
        if not isinstance(region, str):
            raise TritonError.invalid_arg(f"'shared_memory_region' for {what} must be a string")
        size = _count(params, "shared_memory_byte_size", what, True)
        offset = _count(params, "shared_memory_offset", what, False)
        raw = tensor.to_bytes()
        if len(raw) > size:
            raise TritonError.invalid_arg(
                f"shared memory size specified with the request for {what} ({size} bytes) should "
                f"be at least {len(raw)} bytes to hold the results")
        dst = self.registry.view(region, offset, len(raw))
        dst[:] = memoryview(raw).cast("B") if not isinstance(raw, bytes) else raw
        out = {"shared_memory_region": region, "shared_memory_byte_size": len(raw)}
        if offset:
            out["shared_memory_offset"] = offset
        return out
