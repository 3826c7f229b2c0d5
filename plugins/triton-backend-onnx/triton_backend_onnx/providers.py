"""Execution providers for one instance: which, with what options, and what if one is missing.

Config, as Triton's onnxruntime backend reads it::

    optimization { execution_accelerators {
      cpu_execution_accelerator [ { name: "coreml" parameters { key: "MLComputeUnits" value: "ALL" } } ]
      gpu_execution_accelerator [ { name: "cuda" } ]        # or "tensorrt"
    } }
    parameters { key: "strict_execution_providers" value { string_value: "true" } }

- CPU is always the last provider.
- ``cpu_execution_accelerator`` entries apply to every instance: "coreml"
  (macOS builds of onnxruntime) and "openvino" (onnxruntime-openvino).
- A KIND_GPU instance gets the CUDA provider on its device (onnxruntime-gpu),
  after any ``gpu_execution_accelerator`` ("tensorrt", "cuda" with CUDA
  options); CPU instances ignore GPU accelerators, as Triton does.
- An unknown accelerator name fails the load. A known provider that this
  onnxruntime build lacks fails the load when strict (parameter
  ``strict_execution_providers``, or backend config
  ``strict-execution-providers``), else it is skipped with a warning and the
  session runs on what remains (CPU at least).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from triton_core.config import ModelConfig
from triton_core.errors import TritonError

from .params import parse_bool

log = logging.getLogger("triton_backend_onnx")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
COREML = "CoreMLExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

CPU_ACCELERATORS = {"coreml": COREML, "openvino": OPENVINO}
GPU_ACCELERATORS = {"tensorrt": TENSORRT, "cuda": CUDA}

# CoreML provider options (onnxruntime docs, "CoreML Execution Provider"): key -> allowed values
# (None: any string). Booleans are "0"/"1"; true/false are accepted and normalised.
COREML_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "ModelFormat": ("MLProgram", "NeuralNetwork"),
    "MLComputeUnits": ("CPUOnly", "CPUAndNeuralEngine", "CPUAndGPU", "ALL"),
    "RequireStaticInputShapes": ("0", "1"),
    "EnableOnSubgraphs": ("0", "1"),
    "SpecializationStrategy": ("Default", "FastPrediction"),
    "ProfileComputePlan": ("0", "1"),
    "AllowLowPrecisionAccumulationOnGPU": ("0", "1"),
    "ModelCacheDirectory": None,
}

_HINTS = {
    COREML: "the CoreML provider is in onnxruntime's macOS builds only"
    if sys.platform != "darwin"
    else "install an onnxruntime build with the CoreML provider",
    CUDA: "install onnxruntime-gpu and a matching CUDA",
    TENSORRT: "install onnxruntime-gpu with TensorRT",
    OPENVINO: "install onnxruntime-openvino",
}


@dataclass
class ProviderPlan:
    """The providers to pass to InferenceSession, in priority order."""

    providers: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    """Providers the config asked for (beyond CPU), whether or not they are available."""
    strict: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p for p, _ in self.providers]

    def session_kwargs(self) -> dict[str, Any]:
        return {
            "providers": self.names,
            "provider_options": [dict(o) for _, o in self.providers],
        }

    def check_session(self, active: list[str], model: str, instance: str) -> None:
        """After the session exists: every planned provider must be active (ORT may drop one)."""
        lost = [p for p in self.names if p not in active]
        if not lost:
            return
        msg = (
            f"model '{model}', instance '{instance}': onnxruntime did not enable "
            f"{', '.join(lost)} (active providers: {', '.join(active)})"
        )
        if self.strict:
            raise TritonError.unavailable(msg)
        log.warning("%s; running on the active providers", msg)


def is_strict(config: ModelConfig, model: str, backend_config: dict[str, str] | None = None) -> bool:
    value = config.parameter("strict_execution_providers")
    if value is not None:
        return parse_bool(value, f"model '{model}', parameter 'strict_execution_providers'")
    default = (backend_config or {}).get("strict-execution-providers")
    if default is not None:
        return parse_bool(default, "backend config 'strict-execution-providers'")
    return False


def _accelerators(config: ModelConfig, which: str) -> list[dict[str, Any]]:
    eas = ((config.optimization or {}).get("execution_accelerators") or {})
    return list(eas.get(which) or [])


def coreml_options(params: dict[str, str], model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if key not in COREML_OPTIONS:
            raise TritonError.invalid_arg(
                f"model '{model}': unknown parameter '{key}' is provided for the CoreML "
                f"execution accelerator; known parameters: {', '.join(COREML_OPTIONS)}"
            )
        allowed = COREML_OPTIONS[key]
        if allowed == ("0", "1"):
            value = "1" if parse_bool(value, f"model '{model}', CoreML parameter '{key}'") else "0"
        elif allowed is not None and value not in allowed:
            raise TritonError.invalid_arg(
                f"model '{model}': CoreML parameter '{key}' must be one of "
                f"{', '.join(allowed)}, got '{value}'"
            )
        out[key] = value
    return out


def _tensorrt_options(params: dict[str, str], model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if key == "precision_mode":
            flag = {"FP16": "trt_fp16_enable", "BF16": "trt_bf16_enable", "INT8": "trt_int8_enable"}
            if value in flag:
                out[flag[value]] = "1"
            elif value != "FP32":
                raise TritonError.invalid_arg(
                    f"model '{model}': unsupported precision mode '{value}' is requested"
                )
        elif key == "max_workspace_size_bytes":
            out["trt_max_workspace_size"] = value
        elif key == "int8_calibration_table_name":
            out["trt_int8_calibration_table_name"] = value
        elif key == "int8_use_native_calibration_table":
            out["trt_int8_use_native_calibration_table"] = value
        elif key.startswith("trt_"):
            out[key] = value
        else:
            raise TritonError.invalid_arg(
                f"model '{model}': unknown parameter '{key}' is provided for TensorRT "
                "Execution Accelerator"
            )
    return out


_CUDNN_SEARCH = {0: "EXHAUSTIVE", 1: "HEURISTIC", 2: "DEFAULT"}
_ARENA_STRATEGY = {0: "kNextPowerOfTwo", 1: "kSameAsRequested"}


def _cuda_options(config: ModelConfig, extra: dict[str, str], device_id: int, model: str) -> dict[str, str]:
    """CUDA options: Triton's legacy model parameters, then gpu_execution_accelerator 'cuda' ones."""
    opts: dict[str, str] = {}
    for key, table in (("cudnn_conv_algo_search", _CUDNN_SEARCH), ("arena_extend_strategy", _ARENA_STRATEGY)):
        raw = config.parameter(key)
        if raw is not None:
            try:
                opts[key] = table[int(raw)]
            except (ValueError, KeyError):
                raise TritonError.invalid_arg(
                    f"model '{model}': unsupported {key} value '{raw}' is requested"
                ) from None
    for key in ("gpu_mem_limit", "do_copy_in_default_stream"):
        raw = config.parameter(key)
        if raw is not None:
            opts[key] = raw
    opts.update(extra)
    opts["device_id"] = str(device_id)
    return opts


def plan_providers(
    config: ModelConfig,
    model: str,
    kind: str,
    device_id: int,
    available: list[str],
    strict: bool,
) -> ProviderPlan:
    """Decide the providers of one instance. ``available``: onnxruntime.get_available_providers()."""
    plan = ProviderPlan(strict=strict)
    wanted: list[tuple[str, dict[str, str]]] = []

    gpu_eas = _accelerators(config, "gpu_execution_accelerator")
    cpu_eas = _accelerators(config, "cpu_execution_accelerator")
    for where, eas, known in (("gpu", gpu_eas, GPU_ACCELERATORS), ("cpu", cpu_eas, CPU_ACCELERATORS)):
        for ea in eas:
            name = str(ea.get("name", ""))
            if name not in known:
                other = CPU_ACCELERATORS if where == "gpu" else GPU_ACCELERATORS
                hint = (
                    f"; '{name}' belongs in {'cpu' if where == 'gpu' else 'gpu'}_execution_accelerator"
                    if name in other
                    else ""
                )
                raise TritonError.invalid_arg(
                    f"model '{model}': unknown Execution Accelerator '{name}' is requested in "
                    f"{where}_execution_accelerator (known: {', '.join(known)}){hint}"
                )

    if kind == "KIND_GPU":
        cuda_extra: dict[str, str] = {}
        for ea in gpu_eas:
            params = {str(k): str(v) for k, v in (ea.get("parameters") or {}).items()}
            if ea["name"] == "tensorrt":
                trt = _tensorrt_options(params, model)
                trt["device_id"] = str(device_id)
                wanted.append((TENSORRT, trt))
            else:
                cuda_extra.update(params)
        wanted.append((CUDA, _cuda_options(config, cuda_extra, device_id, model)))

    for ea in cpu_eas:
        params = {str(k): str(v) for k, v in (ea.get("parameters") or {}).items()}
        if ea["name"] == "coreml":
            wanted.append((COREML, coreml_options(params, model)))
        else:
            wanted.append((OPENVINO, {"device_type": "CPU", **params}))

    for provider, options in wanted:
        plan.requested.append(provider)
        if provider in available:
            plan.providers.append((provider, options))
            continue
        reason = (
            f"model '{model}': execution provider {provider} is requested ({kind}) but is "
            f"not available in this onnxruntime build ({_HINTS.get(provider, '')}); "
            f"available providers: {', '.join(available) or 'none'}"
        )
        if strict:
            raise TritonError.unavailable(reason + "; strict_execution_providers is set")
        log.warning("%s; falling back to the remaining providers", reason)
        plan.skipped.append(provider)

    plan.providers.append((CPU, {}))
    return plan
