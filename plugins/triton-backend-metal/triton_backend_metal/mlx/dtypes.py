"""MLX dtypes <-> Triton data types, and numpy <-> mlx arrays at the function's edge.

Triton carries BF16 as raw uint16 (numpy has no bfloat16): inputs are viewed as
``mx.bfloat16`` after the copy into MLX, outputs viewed back as uint16. FP64 is
given to MLX as float64 explicitly (``mx.array`` would narrow it to float32);
MLX runs float64 on the CPU only. BYTES has no MLX type.
"""

from __future__ import annotations

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

# MLX dtype names (str(mx.float32) == "mlx.core.float32") -> Triton
_BY_MLX_NAME: dict[str, DataType] = {
    "bool": DataType.BOOL,
    "uint8": DataType.UINT8,
    "uint16": DataType.UINT16,
    "uint32": DataType.UINT32,
    "uint64": DataType.UINT64,
    "int8": DataType.INT8,
    "int16": DataType.INT16,
    "int32": DataType.INT32,
    "int64": DataType.INT64,
    "float16": DataType.FP16,
    "float32": DataType.FP32,
    "float64": DataType.FP64,
    "bfloat16": DataType.BF16,
}
_MLX_NAME = {dt: name for name, dt in _BY_MLX_NAME.items()}

SUPPORTED = tuple(_MLX_NAME)


def mlx_name(mx_dtype: object) -> str:
    """'float32' for mx.float32."""
    return str(mx_dtype).rsplit(".", 1)[-1]


def from_mlx(mx_dtype: object) -> DataType | None:
    """The Triton type of an MLX dtype, or None (complex64 has none)."""
    return _BY_MLX_NAME.get(mlx_name(mx_dtype))


def to_mlx(dt: DataType):  # -> mlx.core.Dtype
    import mlx.core as mx

    name = _MLX_NAME.get(dt)
    if name is None:
        raise TritonError.invalid_arg(f"data type {dt.value} has no MLX equivalent")
    return getattr(mx, "bool_" if name == "bool" else name)


def to_array(array: np.ndarray, dt: DataType):  # -> mlx.core.array
    """An MLX array holding ``array`` (a Triton-side numpy array of type ``dt``)."""
    import mlx.core as mx

    if dt is DataType.BF16:
        return mx.array(np.ascontiguousarray(array, dtype=np.uint16)).view(mx.bfloat16)
    return mx.array(array, dtype=to_mlx(dt))


def to_numpy(value, dt: DataType) -> np.ndarray:
    """A numpy array (Triton's form) of an evaluated MLX array of type ``dt``."""
    import mlx.core as mx

    if dt is DataType.BF16:
        value = value.view(mx.uint16)
    # A view of MLX's memory (the buffer protocol keeps the MLX array alive): no copy.
    return np.asarray(value)
