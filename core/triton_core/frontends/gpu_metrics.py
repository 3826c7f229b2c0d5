"""Triton's GPU metric families, read through NVML every metrics interval.

Triton reads them through DCGM; the families, help texts, units and the ``gpu_uuid``
label are its own: utilization as a ratio, memory in bytes, power in watts, energy in
joules consumed since the server started (a counter). A GPU that cannot answer one of
them (power on some boards) has that sample left out, not reported as zero; without
a GPU the families are absent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from ..devices import GpuDevice, Gpus

log = logging.getLogger("triton_core")

# name -> (type, Triton's help text)
FAMILIES: dict[str, tuple[str, str]] = {
    "nv_gpu_utilization": ("gauge", "GPU utilization rate [0.0 - 1.0)"),
    "nv_gpu_memory_total_bytes": ("gauge", "GPU total memory, in bytes"),
    "nv_gpu_memory_used_bytes": ("gauge", "GPU used memory, in bytes"),
    "nv_gpu_power_usage": ("gauge", "GPU power usage in watts"),
    "nv_gpu_power_limit": ("gauge", "GPU power management limit in watts"),
    "nv_energy_consumption": ("counter", "GPU energy consumption in joules since the Triton "
                                         "Server started"),
}


class GpuSampler:
    """The last reading of each GPU, refreshed by ``sample()`` (the metrics interval)."""

    def __init__(self, gpus: Gpus) -> None:
        self.devices: list[GpuDevice] = gpus.devices()
        self.nvml: Any = gpus.nvml
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, float]] = {}
        self._energy_start: dict[str, int] = {}  # mJ at the first reading
        self._warned: set[tuple[str, str]] = set()
        if self.nvml is not None:
            self.sample()

    def _read(self, dev: GpuDevice, handle: Any, out: dict[str, float]) -> None:
        nvml = self.nvml
        readers = {
            "nv_gpu_utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            "nv_gpu_memory_total_bytes": lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total,
            "nv_gpu_memory_used_bytes": lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used,
            "nv_gpu_power_usage": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            "nv_gpu_power_limit":
                lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
            "nv_energy_consumption": lambda: self._energy(dev, handle),
        }
        for name, read in readers.items():
            try:
                out[name] = float(read())
            except nvml.NVMLError as e:
                if (dev.uuid, name) not in self._warned:  # once: it will not start working
                    self._warned.add((dev.uuid, name))
                    log.warning("GPU %d: %s is not reported: NVML: %s", dev.device_id, name, e)

    def _energy(self, dev: GpuDevice, handle: Any) -> float:
        mj = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        start = self._energy_start.setdefault(dev.uuid, mj)
        return (mj - start) / 1000.0

    def sample(self) -> None:
        if self.nvml is None:
            return
        values: dict[str, dict[str, float]] = {}
        for dev in self.devices:
            out: dict[str, float] = {}
            try:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(dev.nvml_index)
            except self.nvml.NVMLError as e:
                log.warning("GPU %d: no metrics this interval: NVML: %s", dev.device_id, e)
                continue
            self._read(dev, handle, out)
            values[dev.uuid] = out
        with self._lock:
            self._values = values

    def families(self) -> Iterator[Metric]:
        with self._lock:
            values = self._values
        if not values:
            return
        for name, (kind, doc) in FAMILIES.items():
            m = Metric(name, doc, kind)
            for uuid, read in values.items():
                if name in read:
                    m.add_sample(name, {"gpu_uuid": uuid}, read[name])
            if m.samples:
                yield m


__all__ = ["FAMILIES", "GpuSampler"]
