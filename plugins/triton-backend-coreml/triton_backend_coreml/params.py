"""Reading config parameters (``parameters { key: "..." value { string_value: "..." } }``)."""

from __future__ import annotations

import logging

from triton_core.config import ModelConfig
from triton_core.errors import TritonError

log = logging.getLogger("triton_backend_coreml")

_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}

# Every parameter this backend reads; another key is most likely a typo: warned about.
KNOWN = ("compute_units", "specialization_strategy", "reshape_frequency",
         "allow_low_precision_accumulation_on_gpu", "image_channel_order", "function_name",
         "worker_process")


def parse_bool(value: str, what: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise TritonError.invalid_arg(f"{what}: expected a boolean (true/false/1/0), got '{value}'")


def choice(config: ModelConfig, key: str, allowed: tuple[str, ...], model: str) -> str | None:
    """The parameter's value (case-insensitive, returned as spelled in ``allowed``), or None."""
    raw = config.parameter(key)
    if raw is None or raw.strip() == "":
        return None
    for a in allowed:
        if raw.strip().upper() == a.upper():
            return a
    raise TritonError.invalid_arg(
        f"model '{model}', parameter '{key}': expected one of {', '.join(allowed)}, got '{raw}'"
    )


def warn_unknown(config: ModelConfig, model: str) -> list[str]:
    unknown = [k for k in config.parameters if k not in KNOWN]
    for key in unknown:
        log.warning("model '%s': parameter '%s' is not read by the coreml backend (it reads: %s)",
                    model, key, ", ".join(KNOWN))
    return unknown
