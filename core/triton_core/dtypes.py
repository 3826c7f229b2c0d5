"""Triton data types: TYPE_ names, v2 protocol strings, numpy and element sizes."""

from __future__ import annotations

import enum

import numpy as np

from .errors import TritonError


class DataType(enum.Enum):
    """Every Triton tensor type; the value is the KServe v2 datatype string."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BF16 = "BF16"
    BYTES = "BYTES"

    @property
    def config_name(self) -> str:
        """The model-config spelling: TYPE_FP32, TYPE_STRING for BYTES."""
        return "TYPE_STRING" if self is DataType.BYTES else "TYPE_" + self.value

    # Both read attributes set on each member below: a dict keyed by the member would call
    # Enum's Python-level __hash__ (several times a request on the hot path).
    @property
    def itemsize(self) -> int:
        """Bytes per element; 0 for BYTES (variable length)."""
        return self._itemsize  # type: ignore[attr-defined]

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype holding this type. BF16 travels as raw uint16, BYTES as object."""
        return self._numpy  # type: ignore[attr-defined]

    @classmethod
    def from_config(cls, name: str) -> DataType:
        if name == "TYPE_STRING":
            return cls.BYTES
        if name.startswith("TYPE_"):
            try:
                return cls(name[5:])
            except ValueError:
                pass
        raise TritonError.invalid_arg(f"unknown data type '{name}'")

    @classmethod
    def from_wire(cls, name: str) -> DataType:
        try:
            return _BY_WIRE[name]  # a dict lookup: Enum's own costs ~1 us per tensor
        except (KeyError, TypeError):  # TypeError: JSON gave a list or an object
            pass
        try:
            return cls(name)
        except ValueError:
            raise TritonError.invalid_arg(f"invalid datatype '{name}'") from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DataType:
        dt = np.dtype(dtype)
        if dt.kind in ("O", "S", "U"):
            return cls.BYTES
        try:
            return _FROM_NUMPY[dt]
        except KeyError:
            raise TritonError.invalid_arg(f"no Triton type for numpy dtype {dt}") from None


_BY_WIRE = {d.value: d for d in DataType}

_ITEMSIZE = {
    DataType.BOOL: 1,
    DataType.UINT8: 1,
    DataType.UINT16: 2,
    DataType.UINT32: 4,
    DataType.UINT64: 8,
    DataType.INT8: 1,
    DataType.INT16: 2,
    DataType.INT32: 4,
    DataType.INT64: 8,
    DataType.FP16: 2,
    DataType.FP32: 4,
    DataType.FP64: 8,
    DataType.BF16: 2,
    DataType.BYTES: 0,
}

# Explicit little-endian: the wire format is little-endian on every platform.
_TO_NUMPY = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype("<u1"),
    DataType.UINT16: np.dtype("<u2"),
    DataType.UINT32: np.dtype("<u4"),
    DataType.UINT64: np.dtype("<u8"),
    DataType.INT8: np.dtype("<i1"),
    DataType.INT16: np.dtype("<i2"),
    DataType.INT32: np.dtype("<i4"),
    DataType.INT64: np.dtype("<i8"),
    DataType.FP16: np.dtype("<f2"),
    DataType.FP32: np.dtype("<f4"),
    DataType.FP64: np.dtype("<f8"),
    DataType.BF16: np.dtype("<u2"),
    DataType.BYTES: np.dtype(object),
}

_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items() if k not in (DataType.BF16, DataType.BYTES)}

for _d in DataType:
    _d._itemsize = _ITEMSIZE[_d]  # type: ignore[attr-defined]
    _d._numpy = _TO_NUMPY[_d]  # type: ignore[attr-defined]
