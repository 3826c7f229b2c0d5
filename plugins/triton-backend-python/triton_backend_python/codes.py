"""Triton error codes on the worker channels: a code travels as its index in _wire.CODES."""

from __future__ import annotations

from triton_core.errors import ErrorCode, TritonError
from triton_python_backend_utils import _wire

CODES = {name: i for i, name in enumerate(_wire.CODES)}  # ErrorCode value -> wire index


def to_wire(e: TritonError) -> tuple[int, str]:
    return CODES[e.code.value], e.message


def from_wire(code: int, msg: str) -> TritonError:
    name = _wire.CODES[code] if 0 <= code < len(_wire.CODES) else "INTERNAL"
    return TritonError(ErrorCode(name), msg)
