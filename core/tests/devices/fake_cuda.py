"""CUDA faked at the CudaRuntime boundary with host memory: what the CUDA shared-memory
registry does with CUDA's answers, testable without a GPU."""

from __future__ import annotations

from collections import Counter

from triton_core.devices import GpuDevice, Gpus
from triton_core.memory.cuda_shm import CudaError


class HostCuda:
    """Allocations in host memory, keyed by their 64-byte 'IPC handle'."""

    def __init__(self) -> None:
        self.allocs: dict[bytes, bytearray] = {}
        self.ptrs: dict[int, bytearray] = {}
        self.open: set[int] = set()
        self.closed: list[int] = []
        self._next = 0x1000
        self.copies: Counter[str] = Counter()  # as CudaPython counts them

    def allocate(self, size: int) -> bytes:
        handle = self._next.to_bytes(8, "little") * 8
        self._next += 0x1000
        self.allocs[handle] = bytearray(size)
        return handle

    def open_ipc_handle(self, handle: bytes, device_id: int) -> int:
        if handle not in self.allocs:
            raise CudaError("cudaIpcOpenMemHandle: invalid argument")
        ptr = int.from_bytes(handle[:8], "little")
        self.ptrs[ptr] = self.allocs[handle]
        self.open.add(ptr)
        return ptr

    def _buf(self, ptr: int) -> tuple[bytearray, int]:
        base = max(p for p in self.ptrs if p <= ptr)
        return self.ptrs[base], ptr - base

    def allocation_size(self, ptr: int, device_id: int) -> int:
        buf, off = self._buf(ptr)
        return len(buf) - off

    def close_ipc_handle(self, ptr: int, device_id: int) -> None:
        self.open.discard(ptr)
        self.closed.append(ptr)

    def copy_to_host(self, ptr: int, size: int, device_id: int) -> bytearray:
        buf, off = self._buf(ptr)
        self.copies["device_to_host"] += 1
        return bytearray(buf[off:off + size])

    def copy_from_host(self, ptr: int, data, device_id: int) -> None:
        buf, off = self._buf(ptr)
        raw = bytes(data)
        buf[off:off + len(raw)] = raw
        self.copies["host_to_device"] += 1

    def copy_on_device(self, dst: int, src: int, size: int, device_id: int) -> None:
        sbuf, soff = self._buf(src)
        dbuf, doff = self._buf(dst)
        dbuf[doff:doff + size] = sbuf[soff:soff + size]
        self.copies["device_to_device"] += 1


ONE_GPU = Gpus([GpuDevice(0, 0, "GPU-0", "test GPU", (9, 0), 1 << 30, "0000:01:00.0")])

