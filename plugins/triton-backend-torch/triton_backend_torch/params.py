"""The config ``parameters`` Triton's pytorch backend reads, with its meanings and defaults.

| key                                   | default | effect                                               |
|---------------------------------------|---------|------------------------------------------------------|
| DISABLE_OPTIMIZED_EXECUTION           | false   | TorchScript graph executor optimisation off          |
| INFERENCE_MODE                        | true    | torch.inference_mode around load and execute         |
| DISABLE_CUDNN                         | false   | cuDNN off (process-wide in torch)                    |
| ENABLE_TENSOR_FUSER                   | torch's | TorchScript NNC fuser on / off (only when set)       |
| ENABLE_JIT_PROFILING                  | torch's | TorchScript profiling mode (only when set)           |
| ENABLE_JIT_EXECUTOR                   | torch's | TorchScript profiling executor (only when set)       |
| ENABLE_WEIGHT_SHARING                 | false   | instances on one device share one loaded module      |
| ENABLE_CACHE_CLEANING                 | false   | empty the CUDA caching allocator after each execute  |
| CACHE_CLEANING_ENABLED                | false   | the same, Triton's spelling for .pt2 models          |
| INTRA_OP_THREAD_COUNT / NUM_THREADS   | torch's | torch.set_num_threads (process-wide)                 |
| INTER_OP_THREAD_COUNT / NUM_INTEROP_THREADS | torch's | torch.set_num_interop_threads (process-wide)   |
| MODULE_METHOD_NAME                    | forward | the TorchScript method to call                       |
| TORCH_COMPILE_OPTIONAL_PARAMETERS     | none    | model.py runtime: JSON kwargs of torch.compile       |

An unknown key is logged as a warning (it may be meant for another tool); a value that
does not parse fails the load with INVALID_ARG naming the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from triton_core.config import ModelConfig
from triton_core.errors import TritonError

log = logging.getLogger("triton_backend_torch")

KNOWN_KEYS = frozenset({
    "DISABLE_OPTIMIZED_EXECUTION", "INFERENCE_MODE", "DISABLE_CUDNN", "ENABLE_TENSOR_FUSER",
    "ENABLE_JIT_PROFILING", "ENABLE_JIT_EXECUTOR", "ENABLE_WEIGHT_SHARING",
    "ENABLE_CACHE_CLEANING", "CACHE_CLEANING_ENABLED", "INTRA_OP_THREAD_COUNT",
    "INTER_OP_THREAD_COUNT", "NUM_THREADS", "NUM_INTEROP_THREADS", "MODULE_METHOD_NAME",
    "TORCH_COMPILE_OPTIONAL_PARAMETERS",
})

# Triton's ParseBoolValue spellings (compared lower-cased).
_TRUE = {"true", "on", "1"}
_FALSE = {"false", "off", "0"}


def _bool(config: ModelConfig, key: str, model: str) -> bool | None:
    raw = config.parameter(key)
    if raw is None:
        return None
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise TritonError.invalid_arg(
        f"model '{model}', parameter '{key}': failed to convert '{raw}' to boolean value "
        "(expected true/false, on/off or 1/0)")


def _int(config: ModelConfig, key: str, model: str) -> int | None:
    raw = config.parameter(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise TritonError.invalid_arg(
            f"model '{model}', parameter '{key}': failed to convert '{raw}' to an integer") from None


@dataclass(frozen=True)
class TorchParameters:
    optimized_execution: bool = True
    inference_mode: bool = True
    cudnn: bool = True
    tensor_fuser: bool | None = None
    jit_profiling: bool | None = None
    jit_executor: bool | None = None
    weight_sharing: bool = False
    cache_cleaning: bool = False
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    method: str = "forward"
    compile_options: dict | None = None
    unknown: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, config: ModelConfig, model: str) -> TorchParameters:
        def flag(key: str, default: bool) -> bool:
            v = _bool(config, key, model)
            return default if v is None else v

        threads: dict[str, int | None] = {}
        for keys, slot in ((("INTRA_OP_THREAD_COUNT", "NUM_THREADS"), "intra"),
                           (("INTER_OP_THREAD_COUNT", "NUM_INTEROP_THREADS"), "inter")):
            value = None
            for key in keys:
                n = _int(config, key, model)
                if n is not None and n < 0:
                    raise TritonError.invalid_arg(
                        f"model '{model}', parameter '{key}': must be >= 0, got {n}")
                if n:  # 0 leaves torch's default, as Triton
                    value = n
            threads[slot] = value

        method = (config.parameter("MODULE_METHOD_NAME") or "forward").strip()
        if not method.isidentifier():
            raise TritonError.invalid_arg(
                f"model '{model}', parameter 'MODULE_METHOD_NAME': '{method}' is not a method name")

        compile_options = None
        raw = config.parameter("TORCH_COMPILE_OPTIONAL_PARAMETERS")
        if raw is not None and raw.strip():
            try:
                compile_options = json.loads(raw)
            except json.JSONDecodeError as e:
                raise TritonError.invalid_arg(
                    f"model '{model}', parameter 'TORCH_COMPILE_OPTIONAL_PARAMETERS': not JSON: {e}"
                ) from None
            if not isinstance(compile_options, dict):
                raise TritonError.invalid_arg(
                    f"model '{model}', parameter 'TORCH_COMPILE_OPTIONAL_PARAMETERS': expected a "
                    "JSON object of torch.compile arguments")

        unknown = tuple(sorted(k for k in config.parameters if k not in KNOWN_KEYS))
        for key in unknown:
            log.warning("model '%s': parameter '%s' is not read by the pytorch backend; ignored",
                        model, key)

        cleaning = flag("ENABLE_CACHE_CLEANING", False) or flag("CACHE_CLEANING_ENABLED", False)
        return cls(
            optimized_execution=not flag("DISABLE_OPTIMIZED_EXECUTION", False),
            inference_mode=flag("INFERENCE_MODE", True),
            cudnn=not flag("DISABLE_CUDNN", False),
            tensor_fuser=_bool(config, "ENABLE_TENSOR_FUSER", model),
            jit_profiling=_bool(config, "ENABLE_JIT_PROFILING", model),
            jit_executor=_bool(config, "ENABLE_JIT_EXECUTOR", model),
            weight_sharing=flag("ENABLE_WEIGHT_SHARING", False),
            cache_cleaning=cleaning,
            intra_op_threads=threads["intra"],
            inter_op_threads=threads["inter"],
            method=method,
            compile_options=compile_options,
            unknown=unknown,
        )
