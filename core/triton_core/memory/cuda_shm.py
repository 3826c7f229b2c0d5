"""Triton's CUDA shared-memory extension: regions a client allocated on a GPU and shares by
its cudaIpcMemHandle_t (tritonclient.utils.cuda_shared_memory), as the HTTP and gRPC front
ends register, list and unregister them.

Registering opens the handle on the region's GPU (cudaIpcOpenMemHandle) and checks
``byte_size`` against the allocation behind it (cuMemGetAddressRange), as Triton does, so a
request can never read or write past the client's allocation; unregistering closes it,
after the last request that uses the region (as system shared memory, registry.py). An
input read from a region is a view of its device memory (device_array.CudaArray, under the
region's lease): a GPU instance of a backend that takes device tensors reads it in place,
any other instance gets a host copy (cudaMemcpy). Outputs are copied into their region,
device to device when the backend returned a device tensor (docs/gpus.md).

CUDA is reached through ``CudaRuntime``; ``CudaPython`` implements it with cuda-python
(``cuda.bindings``, the package tritonclient's own CUDA utilities use), imported on the
first registration on a GPU that exists: a server without a GPU or without cuda-python
answers status (empty) and unregister as Triton does and refuses registration with
Triton's words.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..devices import SYSTEM, Gpus
from ..errors import ErrorCode, TritonError
from .registry import RegionLease

IPC_HANDLE_SIZE = 64  # sizeof(cudaIpcMemHandle_t)


class CudaError(Exception):
    """A CUDA call failed (the runtime's error name and text)."""


class CudaRuntime(Protocol):
    """The CUDA calls the registry makes (device pointers are ints)."""

    def open_ipc_handle(self, handle: bytes, device_id: int) -> int: ...

    def allocation_size(self, ptr: int, device_id: int) -> int:
        """Bytes from ``ptr`` to the end of the allocation that holds it."""

    def close_ipc_handle(self, ptr: int, device_id: int) -> None: ...

    def copy_to_host(self, ptr: int, size: int, device_id: int) -> bytearray: ...

    def copy_from_host(self, ptr: int, data: bytes | memoryview, device_id: int) -> None: ...

    def copy_on_device(self, dst: int, src: int, size: int, device_id: int) -> None:
        """``size`` bytes from device address ``src`` to ``dst`` (GPUs may differ: UVA)."""


class CudaPython:
    """CudaRuntime through cuda-python's runtime and driver bindings. ``copies`` counts
    the copies made, by direction (device_to_host, host_to_device, device_to_device)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import driver, runtime
        except ImportError as e:
            raise CudaError(f"cuda-python is not installed ({e}): pip install cuda-python") from e
        self._rt = runtime
        self._drv = driver
        self.copies: Counter[str] = Counter()

    def _check(self, result: tuple, what: str) -> tuple:
        err = result[0]
        if isinstance(err, self._rt.cudaError_t):
            if err != self._rt.cudaError_t.cudaSuccess:
                text = self._rt.cudaGetErrorString(err)[1]
                raise CudaError(f"{what}: {text.decode() if isinstance(text, bytes) else text}")
        elif err != self._drv.CUresult.CUDA_SUCCESS:
            text = self._drv.cuGetErrorString(err)[1]
            raise CudaError(f"{what}: {text.decode() if isinstance(text, bytes) else text}")
        return result[1:]

    def _on(self, device_id: int) -> None:
        # the calling thread's current device (a front end's worker threads vary)
        self._check(self._rt.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")

    def open_ipc_handle(self, handle: bytes, device_id: int) -> int:
        import ctypes

        self._on(device_id)
        h = self._rt.cudaIpcMemHandle_t()
        # cuda-bindings 13 exposes the struct's bytes only through its address
        ctypes.memmove(h.getPtr(), handle, IPC_HANDLE_SIZE)
        (ptr,) = self._check(self._rt.cudaIpcOpenMemHandle(
            h, self._rt.cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle")
        return int(ptr)

    def allocation_size(self, ptr: int, device_id: int) -> int:
        self._on(device_id)
        base, size = self._check(self._drv.cuMemGetAddressRange(ptr), "cuMemGetAddressRange")
        return int(size) - (ptr - int(base))

    def close_ipc_handle(self, ptr: int, device_id: int) -> None:
        self._on(device_id)
        self._check(self._rt.cudaIpcCloseMemHandle(ptr), "cudaIpcCloseMemHandle")

    def copy_to_host(self, ptr: int, size: int, device_id: int) -> bytearray:
        import numpy as np

        self._on(device_id)
        out = bytearray(size)
        if size:
            dst = np.frombuffer(out, dtype=np.uint8).ctypes.data
            self._check(self._rt.cudaMemcpy(dst, ptr, size,
                                            self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                        "cudaMemcpy (device to host)")
            self.copies["device_to_host"] += 1
        return out

    def copy_from_host(self, ptr: int, data: bytes | memoryview, device_id: int) -> None:
        import numpy as np

        self._on(device_id)
        src = np.frombuffer(data, dtype=np.uint8)
        if src.size:
            self._check(self._rt.cudaMemcpy(ptr, src.ctypes.data, src.size,
                                            self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
                        "cudaMemcpy (host to device)")
            self.copies["host_to_device"] += 1

    def copy_on_device(self, dst: int, src: int, size: int, device_id: int) -> None:
        self._on(device_id)
        if size:
            # cudaMemcpyDefault: the pointers say where they lie (another GPU: a peer copy)
            self._check(self._rt.cudaMemcpy(dst, src, size,
                                            self._rt.cudaMemcpyKind.cudaMemcpyDefault),
                        "cudaMemcpy (device to device)")
            self.copies["device_to_device"] += 1


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(eq=False)
class _CudaRegion:
    name: str
    device_id: int
    byte_size: int
    ptr: int
    runtime: CudaRuntime
    handle: bytes = b""  # the client's cudaIpcMemHandle_t: how another process maps it
    leases: int = 0
    retired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "device_id": self.device_id, "byte_size": self.byte_size}

    def check(self, offset: int, byte_size: int) -> None:
        """Triton's bounds checks and words (GetMemoryInfo): an offset at the end of the
        region is already out of it (Triton's QA test_infer_offset_out_of_bound)."""
        if not _is_count(offset) or offset >= self.byte_size:
            raise TritonError.invalid_arg(
                f"Invalid offset for shared memory region: '{self.name}'")
        if not _is_count(byte_size) or byte_size > self.byte_size - offset:
            raise TritonError.invalid_arg(
                f"Invalid offset + byte size for shared memory region: '{self.name}'")

    def read(self, offset: int, byte_size: int) -> memoryview:
        self.check(offset, byte_size)
        try:
            data = self.runtime.copy_to_host(self.ptr + offset, byte_size, self.device_id)
        except CudaError as e:
            raise TritonError.internal(
                f"failed to read CUDA shared memory region '{self.name}': {e}") from None
        return memoryview(data)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        size = len(data) if isinstance(data, bytes) else data.nbytes
        self.check(offset, size)
        try:
            self.runtime.copy_from_host(self.ptr + offset, data, self.device_id)
        except CudaError as e:
            raise TritonError.internal(
                f"failed to write CUDA shared memory region '{self.name}': {e}") from None

    def write_from_device(self, offset: int, src: int, size: int) -> None:
        """Copy ``size`` bytes at device address ``src`` into the region, device to device."""
        self.check(offset, size)
        try:
            self.runtime.copy_on_device(self.ptr + offset, src, size, self.device_id)
        except CudaError as e:
            raise TritonError.internal(
                f"failed to write CUDA shared memory region '{self.name}': {e}") from None

    def view(self, offset: int, byte_size: int) -> memoryview:
        raise TritonError.internal(
            f"CUDA shared memory region '{self.name}' has no host view: it is read by copy")

    def device_pointer(self, offset: int, byte_size: int) -> int:
        """The device address of bytes [offset, offset + byte_size), checked."""
        self.check(offset, byte_size)
        return self.ptr + offset

    def pin(self) -> None:
        with self.lock:
            self.leases += 1

    def unpin(self) -> None:
        with self.lock:
            self.leases -= 1
            close = self.retired and self.leases == 0
        if close:
            self._close()

    def retire(self) -> None:
        with self.lock:
            self.retired = True
            close = self.leases == 0
        if close:
            self._close()

    def _close(self) -> None:
        try:
            self.runtime.close_ipc_handle(self.ptr, self.device_id)
        except CudaError as e:  # the client may have freed it already: nothing to give back
            import logging

            logging.getLogger("triton_core").warning(
                "CUDA shared memory region '%s': %s", self.name, e)


class CudaRegionLease(RegionLease):
    """A registered CUDA region pinned for one request: a system region's lease, plus where
    on the GPU it lies."""

    _region: _CudaRegion

    @property
    def device_id(self) -> int:
        return self._region.device_id

    @property
    def runtime(self) -> CudaRuntime:
        return self._region.runtime

    @property
    def ipc_handle(self) -> bytes:
        """The client's cudaIpcMemHandle_t: another process of the server (a python backend
        worker) maps the region with it; offsets count from the region's start."""
        return self._region.handle

    def device_pointer(self, offset: int, byte_size: int) -> int:
        return self._region.device_pointer(offset, byte_size)

    def write_from_device(self, offset: int, src: int, size: int) -> None:
        self._region.write_from_device(offset, src, size)


class CudaSharedMemoryRegistry:
    """Registered CUDA shared-memory regions, by name. Thread-safe.

    ``taken``: whether a name is already registered as system shared memory (Triton keeps
    one namespace for both kinds). ``runtime``: the CUDA calls (default: cuda-python, made
    on the first registration on a GPU that exists).
    """

    def __init__(self, gpus: Gpus = SYSTEM, runtime: CudaRuntime | None = None,
                 taken: Callable[[str], bool] = lambda name: False,
                 max_regions: int = 1024) -> None:
        self.gpus = gpus
        self._runtime = runtime
        self._taken = taken
        self.max_regions = max_regions
        self._lock = threading.Lock()
        self._regions: dict[str, _CudaRegion] = {}
        # why registrations are refused (--frontend-processes N > 1), None when they are not
        self.refused: str | None = None

    def _cuda(self) -> CudaRuntime:
        if self._runtime is None:
            from .device_array import shared_runtime

            self._runtime = shared_runtime()
        return self._runtime

    # -- the extension's three calls ------------------------------------------

    def register(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Open ``raw_handle`` (the 64 bytes of a cudaIpcMemHandle_t) on GPU ``device_id``."""
        if self.refused is not None:  # --frontend-processes N > 1 (frontend_processes.py)
            raise TritonError.unsupported(f"failed to register CUDA shared memory region "
                                          f"'{name}': {self.refused}")
        def invalid(detail: str) -> TritonError:
            # Triton's words (its QA tests match on them), then why
            return TritonError.invalid_arg(
                f"failed to register shared memory region '{name}': invalid args: {detail}")

        if not _is_count(device_id) or not _is_count(byte_size):
            raise invalid("device_id and byte_size must be non-negative integers")
        if len(raw_handle) != IPC_HANDLE_SIZE:
            raise invalid(f"raw_handle holds {len(raw_handle)} bytes, a cudaIpcMemHandle_t "
                          f"{IPC_HANDLE_SIZE}")
        if self.gpus.get(device_id) is None:
            found = ", ".join(str(d.device_id) for d in self.gpus.devices()) or "none"
            raise invalid(f"device {device_id} is not a GPU of this server (GPUs: {found})")
        with self._lock:
            if name in self._regions or self._taken(name):
                raise TritonError(ErrorCode.ALREADY_EXISTS,
                                  f"shared memory region '{name}' already in manager")
            if len(self._regions) >= self.max_regions:
                raise TritonError.unavailable(
                    f"failed to register shared memory region '{name}': the server already "
                    f"holds the maximum of {self.max_regions} registered regions "
                    "(--shm-max-regions); unregister some first")
            try:
                cuda = self._cuda()
                ptr = cuda.open_ipc_handle(bytes(raw_handle), device_id)
            except CudaError as e:
                raise invalid(str(e)) from None
            try:
                available = cuda.allocation_size(ptr, device_id)
            except CudaError as e:
                available, why = -1, str(e)
            if byte_size > available:
                region = _CudaRegion(name, device_id, byte_size, ptr, cuda)
                region.retire()
                raise invalid(why if available < 0 else
                              f"byte_size {byte_size} is larger than the {available} bytes "
                              "allocated behind the handle")
            self._regions[name] = _CudaRegion(name, device_id, byte_size, ptr, cuda,
                                              bytes(raw_handle))

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error when unknown, as Triton); close it once no request uses it."""
        with self._lock:
            region = self._regions.pop(name, None)
        if region is not None:
            region.retire()

    def unregister_all(self) -> None:
        with self._lock:
            regions = list(self._regions.values())
            self._regions.clear()
        for region in regions:
            region.retire()

    def status(self, name: str | None = None) -> list[dict[str, object]]:
        """[{name, device_id, byte_size}] for ``name``, or for every region when None/empty."""
        with self._lock:
            if not name:
                return [r.status() for r in self._regions.values()]
            region = self._regions.get(name)
        if region is None:
            if self._taken(name):
                raise TritonError.not_found(
                    f"The region named '{name}' is registered as system shared memory, not "
                    "CUDA shared memory")
            raise TritonError.not_found(f"Unable to find cuda shared memory region: '{name}'")
        return [region.status()]

    # -- data access for inputs and outputs -----------------------------------

    def read(self, name: str, offset: int, byte_size: int) -> memoryview:
        """A host copy of ``byte_size`` bytes at ``offset`` in region ``name``, checked."""
        return self._get(name).read(offset, byte_size)

    def write(self, name: str, offset: int, data: bytes | memoryview) -> None:
        self._get(name).write(offset, data)

    def acquire(self, name: str) -> CudaRegionLease:
        with self._lock:
            return CudaRegionLease(self._get(name))

    def _get(self, name: str) -> _CudaRegion:
        region = self._regions.get(name)
        if region is None:
            raise TritonError.not_found(f"Unable to find shared memory region: '{name}'")
        return region

    def __len__(self) -> int:
        return len(self._regions)

    def __contains__(self, name: object) -> bool:
        return name in self._regions

    def close(self) -> None:
        """Unregister everything (server shutdown)."""
        self.unregister_all()


__all__ = ["IPC_HANDLE_SIZE", "CudaError", "CudaPython", "CudaRegionLease", "CudaRuntime",
           "CudaSharedMemoryRegistry"]
