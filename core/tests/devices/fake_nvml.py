"""A stand-in for pynvml at the library boundary: the calls and answer shapes the core
uses, with devices described by the test. Tests of our parsing of NVML's answers only;
the real library runs on the GPU machine (tests marked ``gpu``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    def __init__(self, value: int, text: str = "NVML error") -> None:
        super().__init__(text)
        self.value = value


NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_GPU_IS_LOST = 15


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    cc: tuple[int, int] = (9, 0)
    total: int = 80 << 30
    used: int = 1 << 30
    bus: str = "00000000:00:00.0"
    util: int = 0
    power_mw: int = 70_000
    limit_mw: int = 700_000
    energy_mj: int = 1_000_000
    broken: set[str] = field(default_factory=set)  # calls that fail for this device


class FakeNvml:
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED

    def _gpu(self, handle: FakeGpu, call: str) -> FakeGpu:
        if call in handle.broken:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")
        return handle

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:  # noqa: N802
        return self.gpus[i]

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:  # noqa: N802
        return self._gpu(h, "cc").cc

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:  # noqa: N802
        return self._gpu(h, "uuid").uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:  # noqa: N802 - old bindings: bytes
        return self._gpu(h, "name").name.encode()

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:  # noqa: N802
        g = self._gpu(h, "memory")
        return SimpleNamespace(total=g.total, used=g.used, free=g.total - g.used)

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=self._gpu(h, "pci").bus)

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=self._gpu(h, "util").util, memory=0)

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:  # noqa: N802
        return self._gpu(h, "power").power_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:  # noqa: N802
        return self._gpu(h, "limit").limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:  # noqa: N802
        return self._gpu(h, "energy").energy_mj


def four_gpus() -> list[FakeGpu]:
    return [FakeGpu(f"GPU-aaaa000{i}-0000-0000-0000-00000000000{i}", bus=f"00000000:0{i}:00.0")
            for i in range(4)]
