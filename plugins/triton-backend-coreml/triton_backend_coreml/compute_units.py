"""Core ML compute units and optimization hints of one instance.

- ``instance_group`` kind: KIND_CPU -> CPU_ONLY, KIND_GPU -> CPU_AND_GPU, KIND_MODEL ->
  ALL (Core ML picks among CPU, GPU and Neural Engine). The core resolves KIND_AUTO to
  KIND_CPU before a backend sees the config, so KIND_MODEL (or the parameter) is how a
  config asks for the Neural Engine.
- Model parameter ``compute_units`` (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE) overrides
  the kind for every instance.
- Optimization hints (Core ML on macOS 15+): parameters ``specialization_strategy``
  (Default, FastPrediction), ``reshape_frequency`` (Frequent, Infrequent) and
  ``allow_low_precision_accumulation_on_gpu`` (true/false).
"""

from __future__ import annotations

from dataclasses import dataclass

from triton_core.config import ModelConfig

from .params import choice, parse_bool

UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
BY_KIND = {"KIND_CPU": "CPU_ONLY", "KIND_GPU": "CPU_AND_GPU", "KIND_MODEL": "ALL", "KIND_AUTO": "ALL"}
STRATEGIES = ("Default", "FastPrediction")
RESHAPE = ("Frequent", "Infrequent")


@dataclass(frozen=True)
class ExecutionSettings:
    """What a model's config says about running it; the instance kind adds the rest."""

    compute_units: str | None
    """From the parameter; None: by instance kind."""
    specialization_strategy: str | None = None
    reshape_frequency: str | None = None
    allow_low_precision_accumulation_on_gpu: bool | None = None
    worker_process: bool = False
    """Parameter ``worker_process``: predictions in a worker process per instance (worker.py)."""

    @classmethod
    def from_config(cls, config: ModelConfig, model: str) -> ExecutionSettings:
        low = config.parameter("allow_low_precision_accumulation_on_gpu")
        return cls(
            compute_units=choice(config, "compute_units", UNITS, model),
            specialization_strategy=choice(config, "specialization_strategy", STRATEGIES, model),
            reshape_frequency=choice(config, "reshape_frequency", RESHAPE, model),
            allow_low_precision_accumulation_on_gpu=None if low is None or not low.strip() else parse_bool(
                low, f"model '{model}', parameter 'allow_low_precision_accumulation_on_gpu'"),
            worker_process=parse_bool(config.parameter("worker_process") or "false",
                                      f"model '{model}', parameter 'worker_process'"),
        )

    def units_for(self, kind: str) -> str:
        return self.compute_units or BY_KIND.get(kind, "ALL")

    def hint_names(self) -> dict[str, object]:
        """The optimization hints by Core ML's key, as plain values (enum names, bool)."""
        out: dict[str, object] = {}
        if self.specialization_strategy:
            out["specializationStrategy"] = self.specialization_strategy
        if self.reshape_frequency:
            out["reshapeFrequency"] = self.reshape_frequency
        if self.allow_low_precision_accumulation_on_gpu is not None:
            out["allowLowPrecisionAccumulationOnGPU"] = self.allow_low_precision_accumulation_on_gpu
        return out
