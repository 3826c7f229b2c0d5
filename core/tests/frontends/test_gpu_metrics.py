"""Triton's GPU metric families: our reading of NVML's answers (NVML faked at the library
boundary), their text on /metrics, and their absence without a GPU. The real NVML is read
in core/tests/gpu (marked gpu)."""

from __future__ import annotations

from fake_nvml import FakeNvml, four_gpus

from expr_backend import ADD_SUB, make_server, write_model
from triton_core.devices import Gpus, discover
from triton_core.frontends.gpu_metrics import GpuSampler
from triton_core.frontends.metrics import Metrics


def _gpus(fakes):
    nvml = FakeNvml(fakes)
    return Gpus(discover(nvml), nvml), fakes


def _samples(sampler: GpuSampler) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["gpu_uuid"]): s.value for m in sampler.families() for s in m.samples}


def test_families_units_and_labels() -> None:
    gpus, fakes = _gpus(four_gpus()[:2])
    fakes[0].util, fakes[0].used, fakes[0].power_mw, fakes[0].limit_mw = 37, 5 << 30, 123_456, 700_000
    s = GpuSampler(gpus)
    got = _samples(s)
    u0 = fakes[0].uuid
    assert got[("nv_gpu_utilization", u0)] == 0.37
    assert got[("nv_gpu_memory_total_bytes", u0)] == 80 << 30
    assert got[("nv_gpu_memory_used_bytes", u0)] == 5 << 30
    assert got[("nv_gpu_power_usage", u0)] == 123.456
    assert got[("nv_gpu_power_limit", u0)] == 700.0
    assert got[("nv_energy_consumption", u0)] == 0.0  # joules since the server started
    assert len(got) == 12  # six families, two GPUs
    types = {m.name: m.type for m in s.families()}
    assert types["nv_energy_consumption"] == "counter" and types["nv_gpu_utilization"] == "gauge"


def test_energy_counts_from_the_first_reading() -> None:
    gpus, fakes = _gpus(four_gpus()[:1])
    s = GpuSampler(gpus)
    fakes[0].energy_mj += 2500
    s.sample()
    assert _samples(s)[("nv_energy_consumption", fakes[0].uuid)] == 2.5


def test_a_reading_nvml_refuses_is_absent_not_zero() -> None:
    fakes = four_gpus()[:2]
    fakes[1].broken |= {"power", "limit"}
    gpus, _ = _gpus(fakes)
    got = _samples(GpuSampler(gpus))
    assert ("nv_gpu_power_usage", fakes[1].uuid) not in got
    assert ("nv_gpu_power_limit", fakes[1].uuid) not in got
    assert ("nv_gpu_power_usage", fakes[0].uuid) in got
    assert ("nv_gpu_utilization", fakes[1].uuid) in got


def test_metrics_text(tmp_path) -> None:
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as server:
        server.manager.gpus, fakes = _gpus(four_gpus()[:1])
        text = Metrics(server, model_metrics=False, cpu_metrics=False).render().decode()
        assert "# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)\n" in text
        assert "# TYPE nv_energy_consumption counter\n" in text
        assert f'nv_gpu_memory_total_bytes{{gpu_uuid="{fakes[0].uuid}"}} 85899345920\n' in text
        off = Metrics(server, model_metrics=False, cpu_metrics=False, gpu_metrics=False)
        assert "nv_gpu" not in off.render().decode()


def test_no_gpu_no_families(tmp_path) -> None:
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as server:
        server.manager.gpus = Gpus([])
        text = Metrics(server).render().decode()
        assert "nv_gpu" not in text and "nv_energy" not in text and "nv_cpu_utilization" in text
