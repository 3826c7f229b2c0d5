"""The engine that compiles and dispatches Metal kernels, behind a small interface.

``metalcompute`` (the engine this backend was specified with) compiles a kernel
from source, takes a 1-D thread count and positional buffers bound to
``[[buffer(0)]]``, ``[[buffer(1)]]``, ... in order, copies Python-buffer inputs
into Metal buffers on each call, and keeps global state without locks: its
dispatches are serialized here, one at a time per process. It cannot set the
threadgroup size (Metal picks it) nor take a 2-D or 3-D grid; models asking for
those fail to load with that reason.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class OutputSpec:
    shape: tuple[int, ...]
    dtype: np.dtype


class CompiledKernel(Protocol):
    def dispatch(
        self,
        grid: Sequence[int],
        threadgroup: Sequence[int] | None,
        inputs: Sequence[np.ndarray],
        outputs: Sequence[OutputSpec],
        constants: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """Run the kernel over ``grid`` threads with buffers bound as inputs, outputs, constants;
        return the outputs (filled by the kernel)."""
        ...


class KernelEngine(Protocol):
    name: str
    max_grid_dims: int
    sets_threadgroup_size: bool

    def compile(self, source: str, kernel: str) -> CompiledKernel:
        """Compile ``kernel`` of ``source``; raises ValueError with the compiler's message."""
        ...


def engine_unavailable() -> str | None:
    """None when the Metal engine can run here, else why not."""
    if sys.platform != "darwin":
        return f"Metal runs on macOS only (this is {sys.platform}); kernel models load nowhere else"
    try:
        import metalcompute as mc
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return f"metalcompute cannot be imported: {type(e).__name__}: {e} (pip install metalcompute)"
    try:
        devices = mc.get_devices()
    except Exception as e:  # noqa: BLE001
        return f"metalcompute cannot list Metal devices: {e}"
    if not devices:
        return "metalcompute finds no Metal device"
    return None


# metalcompute keeps its device state in globals without locks: one dispatch at a time.
_DISPATCH_LOCK = threading.Lock()


class _MetalComputeKernel:
    def __init__(self, device, function) -> None:
        self._device = device
        self._function = function

    def dispatch(
        self,
        grid: Sequence[int],
        threadgroup: Sequence[int] | None,
        inputs: Sequence[np.ndarray],
        outputs: Sequence[OutputSpec],
        constants: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        if len(grid) != 1 or threadgroup is not None:
            raise ValueError("metalcompute dispatches 1-D grids with Metal's threadgroup size only")
        with _DISPATCH_LOCK:
            out_buffers = [
                self._device.buffer(max(int(np.prod(o.shape)) * o.dtype.itemsize, 1)) for o in outputs
            ]
            args = [np.ascontiguousarray(a) for a in inputs]
            args += out_buffers
            args += [np.ascontiguousarray(c) for c in constants]
            handle = self._function(int(grid[0]), *args)
            del handle  # blocks until the kernel has completed
        return [
            np.frombuffer(buf, dtype=o.dtype, count=int(np.prod(o.shape))).reshape(o.shape)
            for buf, o in zip(out_buffers, outputs, strict=True)
        ]


class MetalComputeEngine:
    name = "metalcompute"
    max_grid_dims = 1
    sets_threadgroup_size = False

    def __init__(self) -> None:
        import metalcompute as mc

        with _DISPATCH_LOCK:
            self._device = mc.Device()

    def compile(self, source: str, kernel: str) -> CompiledKernel:
        with _DISPATCH_LOCK:
            try:
                function = self._device.kernel(source).function(kernel)
            except Exception as e:  # noqa: BLE001 - metalcompute raises its own types
                raise ValueError(str(e).strip() or type(e).__name__) from None
        return _MetalComputeKernel(self._device, function)
