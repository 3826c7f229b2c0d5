"""The NVIDIA GPUs this process may use, found through NVML (nvidia-ml-py).

The core never imports torch or a CUDA runtime to learn about GPUs: NVML ships with
the driver and answers without creating a CUDA context. No nvidia-ml-py, no driver or
no GPU is a normal state: ``gpus()`` is then empty and everything runs on the CPU.

Device ids are CUDA ordinals, as Triton uses them (``instance_group { gpus: [...] }``,
``device_id`` of a CUDA shared-memory region): NVML's devices in PCI order, narrowed
and reordered by ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs) as the CUDA runtime does.
With ``CUDA_DEVICE_ORDER=FASTEST_FIRST`` (CUDA's default) on a machine with GPUs of
different speeds the runtime may number them differently; on identical GPUs (the
usual server) the orders agree. docs/gpus.md says so too.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger("triton_core")

# Triton's TRITON_MIN_COMPUTE_CAPABILITY (--min-supported-compute-capability's default)
DEFAULT_MIN_COMPUTE_CAPABILITY = 6.0


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML describes it."""

    device_id: int
    """The CUDA ordinal (what config.pbtxt's ``gpus`` and the CUDA shm extension name)."""
    nvml_index: int
    uuid: str
    """``GPU-...``: the ``gpu_uuid`` label of Triton's GPU metrics."""
    name: str
    compute_capability: tuple[int, int]
    memory_total_bytes: int
    pci_bus_id: str

    @property
    def capability(self) -> float:
        major, minor = self.compute_capability
        return major + minor / 10.0


def load_nvml() -> ModuleType | None:
    """The pynvml module, initialised; None (logged) when it or the driver is absent."""
    try:
        import pynvml
    except ImportError:
        log.debug("nvidia-ml-py is not installed: no GPUs are used")
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:  # no driver, no library, no permission: CPU only
        log.info("no NVIDIA GPUs are used: NVML: %s", e)
        return None
    return pynvml


def _text(value: str | bytes) -> str:
    # pynvml answers str; bindings of older drivers answered bytes
    return value.decode() if isinstance(value, bytes) else value


def _visible(devices: list[GpuDevice], spec: str | None) -> list[GpuDevice]:
    """``devices`` (PCI order) as CUDA_VISIBLE_DEVICES exposes them, renumbered from 0.

    As the CUDA runtime: entries are indices or (prefixes of) UUIDs; the list ends at the
    first entry that names no device; an empty value hides every device.
    """
    if spec is None:
        return devices
    chosen: list[GpuDevice] = []
    for raw in spec.split(","):
        item = raw.strip()
        found: GpuDevice | None = None
        if item.isdigit():  # an NVML (PCI order) index
            found = next((d for d in devices if d.nvml_index == int(item)), None)
        elif item:
            want = item if item.startswith("GPU-") else f"GPU-{item}"
            hits = [d for d in devices if d.uuid.startswith(want)]
            found = hits[0] if len(hits) == 1 else None
        if found is None or found in chosen:
            break
        chosen.append(found)
    return [GpuDevice(i, d.nvml_index, d.uuid, d.name, d.compute_capability,
                      d.memory_total_bytes, d.pci_bus_id) for i, d in enumerate(chosen)]


def discover(nvml: Any, visible: str | None = None) -> list[GpuDevice]:
    """Every GPU NVML reports (``nvml``: an initialised pynvml), as CUDA ordinals.

    A device NVML cannot describe (lost, in a bad state) is logged and left out; the
    others stay usable under their own ordinals.
    """
    found: list[GpuDevice] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append(GpuDevice(
                device_id=index,
                nvml_index=index,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                compute_capability=(int(major), int(minor)),
                memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
            ))
        except nvml.NVMLError as e:
            log.warning("GPU %d (NVML index) is left out: NVML: %s", index, e)
    return _visible(found, visible)


class Gpus:
    """The process's GPUs, discovered once (as Triton asks CUDA once, at start)."""

    def __init__(self, devices: list[GpuDevice] | None = None, nvml: Any = None) -> None:
        """``devices``: a fixed answer instead of asking NVML (a server that must not use
        the machine's GPUs, or tests); ``nvml``: the initialised library that answers for
        them (metrics), if any."""
        self._lock = threading.Lock()
        self._devices: list[GpuDevice] | None = devices
        self.nvml: Any = nvml
        # a fixed answer is the whole answer: no Apple GPU is added to it
        self._apple_gpu = devices is None and apple_silicon()

    def devices(self) -> list[GpuDevice]:
        with self._lock:
            if self._devices is None:
                self.nvml = load_nvml()
                self._devices = [] if self.nvml is None else discover(
                    self.nvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
                for d in self._devices:
                    log.info("GPU %d: %s (compute capability %d.%d, %d MiB, %s)", d.device_id,
                             d.name, *d.compute_capability, d.memory_total_bytes >> 20, d.uuid)
            return self._devices

    def supported(self, min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY
                  ) -> list[GpuDevice]:
        """The GPUs at or above ``min_compute_capability`` (Triton's GetSupportedGPUs)."""
        return [d for d in self.devices() if d.capability >= min_compute_capability]

    def placement_ids(self, min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY
                      ) -> list[int]:
        """The GPU ids instance groups may use: the supported NVIDIA GPUs; on a Mac with
        Apple silicon, its one GPU as id 0 (Metal, MPS, Core ML's GPU), which NVML does
        not see. The Apple GPU has no CUDA compute capability, no ``nv_gpu_*`` metrics and
        no CUDA shared memory: ``devices()`` and ``get()`` stay NVIDIA's."""
        ids = [d.device_id for d in self.supported(min_compute_capability)]
        if not ids and self._apple_gpu and not self.devices():
            return [0]
        return ids

    def get(self, device_id: int) -> GpuDevice | None:
        for d in self.devices():
            if d.device_id == device_id:
                return d
        return None


def apple_silicon() -> bool:
    """A Mac with Apple silicon: it always has one GPU, reached through Metal."""
    return sys.platform == "darwin" and platform.machine() == "arm64"


SYSTEM = Gpus()
"""The process-wide discovery (GPUs do not come and go while a server runs)."""


def gpus() -> list[GpuDevice]:
    return SYSTEM.devices()


def supported_gpu_ids(min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY) -> list[int]:
    return [d.device_id for d in SYSTEM.supported(min_compute_capability)]


__all__ = ["DEFAULT_MIN_COMPUTE_CAPABILITY", "SYSTEM", "GpuDevice", "Gpus", "apple_silicon", "discover",
           "gpus", "load_nvml", "supported_gpu_ids"]
