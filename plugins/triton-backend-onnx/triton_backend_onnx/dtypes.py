"""ONNX Runtime tensor types <-> Triton data types, and the conversions at the session's edge.

ORT names element types as ``tensor(float)``; Triton as ``TYPE_FP32`` / ``FP32``.
Two types need care in Python:

- strings: ORT's Python API takes and returns ``str`` (UTF-8); Triton's BYTES
  elements are ``bytes``. Inputs are decoded (non-UTF-8 bytes are refused with
  INVALID_ARG naming the input), outputs are encoded back to bytes.
- bfloat16: numpy has no bfloat16. Triton carries BF16 as raw uint16; inputs go
  to ORT as OrtValues tagged bfloat16, outputs are copied out of the OrtValue's
  buffer as uint16.
"""

from __future__ import annotations

import ctypes

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

# ONNX TensorProto.DataType numbers (onnx.proto), used to tag OrtValues.
ONNX_BFLOAT16 = 16

_ORT_TO_TRITON: dict[str, DataType] = {
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(float16)": DataType.FP16,
    "tensor(float)": DataType.FP32,
    "tensor(double)": DataType.FP64,
    "tensor(bfloat16)": DataType.BF16,
    "tensor(string)": DataType.BYTES,
}



def from_ort(ort_type: str) -> DataType | None:
    """The Triton type of an ORT type string, or None (sequences, maps, float8, int4, complex...)."""
    return _ORT_TO_TRITON.get(ort_type)


def to_session_input(name: str, array: np.ndarray, dt: DataType) -> np.ndarray:
    """A Triton-side array in the form ORT's Python API accepts (BF16 excepted: see bf16_ortvalue)."""
    if dt is DataType.BYTES:
        return _decode_strings(name, array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def bf16_ortvalue(array: np.ndarray):  # -> onnxruntime.OrtValue
    import onnxruntime as ort

    array = np.ascontiguousarray(array, dtype=np.uint16)
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array, onnx_element_type=ONNX_BFLOAT16)


def bf16_from_ortvalue(value) -> np.ndarray:
    """Copy a bfloat16 OrtValue (CPU) out as a uint16 array of the same shape."""
    shape = tuple(value.shape())
    n = int(np.prod(shape)) if shape else 1
    if n == 0:
        return np.empty(shape, dtype=np.uint16)
    buf = (ctypes.c_uint16 * n).from_address(value.data_ptr())
    return np.frombuffer(buf, dtype=np.uint16, count=n).copy().reshape(shape)


def from_session_output(array: np.ndarray, dt: DataType) -> np.ndarray:
    """An ORT output in Triton's form (strings -> bytes objects)."""
    if dt is DataType.BYTES:
        out = np.empty(array.shape, dtype=object)
        flat_in = array.reshape(-1)
        flat_out = out.reshape(-1)
        for i, s in enumerate(flat_in):
            flat_out[i] = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        return out
    return array


def _decode_strings(name: str, array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    flat_in = np.asarray(array, dtype=object).reshape(-1)
    flat_out = out.reshape(-1)
    for i, item in enumerate(flat_in):
        if isinstance(item, str):
            flat_out[i] = item
            continue
        try:
            flat_out[i] = bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            raise TritonError.invalid_arg(
                f"input '{name}': element {i} is not valid UTF-8; ONNX Runtime string "
                "tensors hold UTF-8 text"
            ) from None
    return out
