"""Device memory handed to a backend as an array it can take without a copy.

``CudaArray`` describes a C-contiguous block of device memory by CUDA's array interface
(``__cuda_array_interface__``, version 3), which torch (``torch.as_tensor``), CuPy and
Numba read as a view of the same memory. It holds what keeps the memory alive (a CUDA
shared-memory region's lease, a framework's tensor) for as long as the array lives.

The core reaches CUDA only through a ``CudaRuntime`` (cuda_shm.py): the host copy a
CPU instance needs, and the device-to-device copy of an output into a CUDA region.
``shared_runtime()`` is the process's cuda-python runtime, made on first use; its
``copies`` count each kind of copy, so a test can see that none went through the host.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TritonError

if TYPE_CHECKING:
    from .cuda_shm import CudaRuntime

_lock = threading.Lock()
_shared: CudaRuntime | None = None


def shared_runtime() -> CudaRuntime:
    """The process's cuda-python runtime (raises cuda_shm.CudaError without cuda-python)."""
    global _shared
    with _lock:
        if _shared is None:
            from .cuda_shm import CudaPython

            _shared = CudaPython()
        return _shared


def _c_strides(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    strides: list[int] = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(int(dim), 1)
    return tuple(reversed(strides))


class CudaArray:
    """``shape`` elements of ``dtype`` at device address ``ptr`` on GPU ``device_id``,
    row-major. ``owner`` is kept alive with the array (the memory's lifetime)."""

    __slots__ = ("ptr", "shape", "dtype", "device_id", "ipc", "_owner", "_runtime")

    def __init__(self, ptr: int, shape: Sequence[int], dtype: np.dtype, device_id: int,
                 owner: Any = None, runtime: CudaRuntime | None = None,
                 ipc: tuple[bytes, int] | None = None) -> None:
        self.ptr = int(ptr)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.device_id = int(device_id)
        self.ipc = ipc
        """How another process maps this memory: (cudaIpcMemHandle_t bytes, offset of
        ``ptr`` in that allocation), or None (the python backend's workers use it)."""
        self._owner = owner
        self._runtime = runtime

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        # stream None: the producer finished writing (a client's region before its request,
        # a backend's output after it synchronised), the consumer need not wait on a stream
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3, "stream": None}

    @property
    def runtime(self) -> CudaRuntime:
        return self._runtime if self._runtime is not None else shared_runtime()

    def reshaped(self, shape: Sequence[int]) -> CudaArray:
        """The same memory under another shape of as many elements."""
        return CudaArray(self.ptr, shape, self.dtype, self.device_id, self._owner,
                         self._runtime, self.ipc)

    def to_host(self) -> bytearray:
        """The bytes, copied to host memory."""
        from .cuda_shm import CudaError

        try:
            return self.runtime.copy_to_host(self.ptr, self.nbytes, self.device_id)
        except CudaError as e:
            raise TritonError.internal(f"failed to copy a GPU tensor to the host: {e}") from None

    @classmethod
    def from_interface(cls, obj: Any, device_id: int,
                       runtime: CudaRuntime | None = None) -> CudaArray:
        """Wrap a framework's device tensor (anything with ``__cuda_array_interface__``,
        contiguous, on GPU ``device_id``); the array keeps ``obj`` alive."""
        cai = obj.__cuda_array_interface__
        dtype = np.dtype(cai["typestr"])
        shape = tuple(int(d) for d in cai["shape"])
        strides = cai.get("strides")
        if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
            raise TritonError.internal(
                f"a GPU tensor of strides {tuple(strides)} is not row-major: make it "
                "contiguous first")
        return cls(int(cai["data"][0]), shape, dtype, device_id, obj, runtime)

    def __repr__(self) -> str:
        return f"CudaArray(0x{self.ptr:x}, {list(self.shape)}, {self.dtype}, cuda:{self.device_id})"


__all__ = ["CudaArray", "shared_runtime"]
