"""Core ML feature types <-> Triton data types, as Core ML's Python bridge really behaves.

- MLMultiArray element types FLOAT32, FLOAT16, DOUBLE, INT32, INT8 map one to one.
- Scalar features: int64 -> INT64 [1], double -> FP64 [1], string -> BYTES [1].
- A config may declare INT64 for an INT32 model input (clients that only send int64):
  values are cast to int32 when that is lossless, else the request gets INVALID_ARG.
- A config may declare FP32 for an FP16 model output (the bridge hands FP16 outputs back
  as float32 on some OS versions); a config that says FP16 gets float16 either way.
"""

from __future__ import annotations

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

# ArrayFeatureType.ArrayDataType names (coremltools.proto.FeatureTypes_pb2) -> Triton.
ARRAY_TYPES: dict[str, DataType] = {
    "FLOAT32": DataType.FP32,
    "FLOAT16": DataType.FP16,
    "DOUBLE": DataType.FP64,
    "INT32": DataType.INT32,
    "INT8": DataType.INT8,
}


def accepts_config_type(model_type: DataType, config_type: DataType, is_input: bool) -> bool:
    """Whether a config data type may stand for a model tensor of ``model_type``."""
    if config_type is model_type:
        return True
    if is_input:
        return model_type is DataType.INT32 and config_type is DataType.INT64
    return model_type is DataType.FP16 and config_type is DataType.FP32


def to_model_input(name: str, array: np.ndarray, model_type: DataType) -> np.ndarray:
    """A request array in the element type the model takes (INT64 -> INT32 only when lossless)."""
    want = model_type.numpy
    if array.dtype == want:
        return np.ascontiguousarray(array)
    if model_type is DataType.INT32 and array.dtype == np.int64:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise TritonError.invalid_arg(
                f"input '{name}': INT64 values must fit INT32 for this Core ML model (its input is "
                f"INT32), got values in [{int(array.min())}, {int(array.max())}]"
            )
        return array.astype(np.int32)
    raise TritonError.invalid_arg(
        f"input '{name}': expected {model_type.value}, got numpy {array.dtype}"
    )


def to_config_output(array: np.ndarray, config_type: DataType) -> np.ndarray:
    """A Core ML output array in the config's element type (FP16 <-> FP32 both ways)."""
    want = config_type.numpy
    if config_type is DataType.BYTES or array.dtype == want:
        return array
    if array.dtype.kind == "f" and config_type in (DataType.FP16, DataType.FP32, DataType.FP64):
        return array.astype(want)
    if array.dtype.kind in "iu" and config_type in (DataType.INT32, DataType.INT64, DataType.INT8):
        return array.astype(want)
    raise TritonError.internal(
        f"Core ML returned {array.dtype} where the config says {config_type.value}"
    )
