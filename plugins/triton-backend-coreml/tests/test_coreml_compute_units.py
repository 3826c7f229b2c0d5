"""Compute units from the instance kind and parameters; optimization hints."""

from __future__ import annotations

import pytest

from triton_backend_coreml.compute_units import ExecutionSettings
from triton_core.config import parse_pbtxt
from triton_core.errors import TritonError


def _settings(params: dict[str, str] | None = None) -> ExecutionSettings:
    text = "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
                   for k, v in (params or {}).items())
    return ExecutionSettings.from_config(parse_pbtxt(text), "m")


@pytest.mark.parametrize("kind, units", [("KIND_CPU", "CPU_ONLY"), ("KIND_GPU", "CPU_AND_GPU"),
                                         ("KIND_MODEL", "ALL"), ("KIND_AUTO", "ALL")])
def test_units_by_instance_kind(kind, units):
    assert _settings().units_for(kind) == units


@pytest.mark.parametrize("value, units", [("ALL", "ALL"), ("cpu_and_ne", "CPU_AND_NE"),
                                          ("CPU_ONLY", "CPU_ONLY"), ("CPU_AND_GPU", "CPU_AND_GPU")])
def test_parameter_overrides_the_kind(value, units):
    s = _settings({"compute_units": value})
    assert s.units_for("KIND_CPU") == units and s.units_for("KIND_GPU") == units


def test_unknown_compute_units_are_refused():
    with pytest.raises(TritonError, match="parameter 'compute_units': expected one of ALL, CPU_ONLY, "
                                          "CPU_AND_GPU, CPU_AND_NE, got 'NEURAL'"):
        _settings({"compute_units": "NEURAL"})


def test_optimization_hints():
    s = _settings({"specialization_strategy": "fastprediction", "reshape_frequency": "Infrequent",
                   "allow_low_precision_accumulation_on_gpu": "true"})
    assert s.hint_names() == {"specializationStrategy": "FastPrediction", "reshapeFrequency": "Infrequent",
                              "allowLowPrecisionAccumulationOnGPU": True}
    import coremltools as ct

    from triton_backend_coreml.predict import coreml_hints

    hints = coreml_hints(s.hint_names())
    assert hints == {"specializationStrategy": ct.SpecializationStrategy.FastPrediction,
                     "reshapeFrequency": ct.ReshapeFrequency.Infrequent,
                     "allowLowPrecisionAccumulationOnGPU": True}
    assert _settings().hint_names() == {}
    assert _settings().worker_process is False
    assert _settings({"worker_process": "true"}).worker_process is True


def test_bad_hints_are_refused():
    with pytest.raises(TritonError, match="parameter 'reshape_frequency': expected one of Frequent, "
                                          "Infrequent, got 'often'"):
        _settings({"reshape_frequency": "often"})
    with pytest.raises(TritonError, match="allow_low_precision_accumulation_on_gpu': expected a boolean"):
        _settings({"allow_low_precision_accumulation_on_gpu": "maybe"})
