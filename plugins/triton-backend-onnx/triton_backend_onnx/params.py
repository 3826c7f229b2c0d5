"""Reading config parameters (``parameters { key: "..." value { string_value: "..." } }``)."""

from __future__ import annotations

from triton_core.config import ModelConfig
from triton_core.errors import TritonError

_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def parse_bool(value: str, what: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise TritonError.invalid_arg(f"{what}: expected a boolean (true/false/1/0), got '{value}'")


def bool_param(config: ModelConfig, key: str, model: str, default: bool | None = None) -> bool | None:
    value = config.parameter(key)
    if value is None:
        return default
    return parse_bool(value, f"model '{model}', parameter '{key}'")


def int_param(config: ModelConfig, key: str, model: str, default: int = 0) -> int:
    value = config.parameter(key)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise TritonError.invalid_arg(
            f"model '{model}', parameter '{key}': expected an integer, got '{value}'"
        ) from None
