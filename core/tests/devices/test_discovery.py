"""Device discovery: our reading of NVML's answers (NVML faked at the library boundary),
CUDA_VISIBLE_DEVICES, and no NVML at all as a normal state."""

from __future__ import annotations

import sys

import pytest
from fake_nvml import FakeGpu, FakeNvml, four_gpus

from triton_core import devices
from triton_core.devices import Gpus, discover


def test_discover_reads_every_device_as_cuda_ordinals() -> None:
    found = discover(FakeNvml(four_gpus()))
    assert [d.device_id for d in found] == [0, 1, 2, 3]
    d = found[2]
    assert d.uuid == "GPU-aaaa0002-0000-0000-0000-000000000002"
    assert d.name == "NVIDIA H100 80GB HBM3"  # bytes from old bindings decoded
    assert d.compute_capability == (9, 0) and d.capability == 9.0
    assert d.memory_total_bytes == 80 << 30
    assert d.pci_bus_id == "00000000:02:00.0"


def test_a_device_nvml_cannot_describe_is_left_out() -> None:
    gpus = four_gpus()
    gpus[1].broken.add("uuid")
    found = discover(FakeNvml(gpus))
    assert [d.uuid[-1] for d in found] == ["0", "2", "3"]
    assert [d.device_id for d in found] == [0, 2, 3]  # CUDA still counts GPU 1


@pytest.mark.parametrize(("spec", "expect"), [
    ("2,0", ["2", "0"]),
    ("", []),
    ("1,7,2", ["1"]),  # the runtime stops at the first id that names no device
    ("GPU-aaaa0003", ["3"]),  # a UUID prefix
    ("aaaa0001-0000-0000-0000-000000000001", ["1"]),  # without GPU-
    ("3,3", ["3"]),  # a repeated device ends the list
])
def test_cuda_visible_devices(spec: str, expect: list[str]) -> None:
    found = discover(FakeNvml(four_gpus()), spec)
    assert [d.uuid[-1] for d in found] == expect
    assert [d.device_id for d in found] == list(range(len(expect)))


def test_supported_filters_by_compute_capability() -> None:
    old = FakeGpu("GPU-old", cc=(5, 2))
    new = FakeGpu("GPU-new", cc=(8, 6))
    g = Gpus(discover(FakeNvml([old, new])))
    assert [d.uuid for d in g.supported()] == ["GPU-new"]  # Triton's default minimum: 6.0
    assert [d.uuid for d in g.supported(8.7)] == []
    assert [d.uuid for d in g.supported(5.0)] == ["GPU-old", "GPU-new"]
    assert g.get(1) is not None and g.get(1).uuid == "GPU-new" and g.get(2) is None


def test_without_nvidia_ml_py_there_are_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    assert devices.load_nvml() is None
    assert Gpus().devices() == []


def test_without_a_driver_there_are_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert devices.load_nvml() is None
    assert Gpus().devices() == []


def _mac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    monkeypatch.setattr(devices.platform, "machine", lambda: "arm64")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # macOS has no NVML


def test_a_mac_with_apple_silicon_places_instances_on_its_one_gpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _mac(monkeypatch)
    g = Gpus()
    assert g.placement_ids() == [0] and g.placement_ids(9.0) == [0]  # no CUDA capability
    assert g.devices() == [] and g.get(0) is None  # no NVIDIA GPU: no metrics, no CUDA shm


def test_the_apple_gpu_is_not_added_to_a_fixed_answer_or_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _mac(monkeypatch)
    assert Gpus([]).placement_ids() == []
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")  # an Intel Mac
    assert Gpus().placement_ids() == []
