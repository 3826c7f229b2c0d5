"""Triton data types <-> torch dtypes, and the conversions at the model's edge.

- BF16: numpy has none; Triton carries it as raw uint16, so a batch is viewed as
  ``torch.bfloat16`` without a copy (and an output viewed back as uint16).
- BYTES: TorchScript takes and returns ``List[str]`` (Triton's rule: one dimension).
  Elements are decoded as UTF-8; bytes that are not UTF-8 are refused with
  INVALID_ARG naming the input, since a Python ``str`` cannot carry them.
- UINT16/32/64: Triton's pytorch backend refuses them; torch has had these dtypes
  since 2.3 (few kernels, but identity, copies and comparisons work), so they are served.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

TO_TORCH: dict[DataType, torch.dtype] = {
    DataType.BOOL: torch.bool,
    DataType.UINT8: torch.uint8,
    DataType.UINT16: torch.uint16,
    DataType.UINT32: torch.uint32,
    DataType.UINT64: torch.uint64,
    DataType.INT8: torch.int8,
    DataType.INT16: torch.int16,
    DataType.INT32: torch.int32,
    DataType.INT64: torch.int64,
    DataType.FP16: torch.float16,
    DataType.FP32: torch.float32,
    DataType.FP64: torch.float64,
    DataType.BF16: torch.bfloat16,
}
FROM_TORCH: dict[torch.dtype, DataType] = {v: k for k, v in TO_TORCH.items()}


def from_torch(dtype: torch.dtype) -> DataType | None:
    """The Triton type of a torch dtype, or None (complex, float8, quantized...)."""
    return FROM_TORCH.get(dtype)


def type_name(dtype: torch.dtype) -> str:
    """Triton's config spelling of a torch dtype (TYPE_FP32), or torch's name when none."""
    dt = FROM_TORCH.get(dtype)
    return dt.config_name if dt is not None else str(dtype)


# Request bytes (an HTTP body, a gRPC message, a shared-memory copy) are read-only; torch warns
# about that once. Like Triton's pytorch backend, the model reads them in place, without a copy.
# One filter for that message (a catch_warnings per batch cost more than the rest of the feed).
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


def to_tensor(array: np.ndarray, dt: DataType) -> torch.Tensor:
    """A request batch as a CPU tensor sharing the array's memory (as Triton's from_blob)."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    t = torch.from_numpy(array)  # read-only request bytes: see the filter above
    if dt is DataType.BF16:
        t = t.view(torch.bfloat16)
    return t


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU output tensor as numpy in Triton's form (BF16 as raw uint16)."""
    if t.dtype is torch.bfloat16:
        t = t.view(torch.uint16)
    return t.numpy()


def to_strings(name: str, array: np.ndarray) -> list[str]:
    """A BYTES batch as the ``List[str]`` TorchScript takes."""
    out: list[str] = []
    for i, item in enumerate(array.reshape(-1)):
        if isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError:
            raise TritonError.invalid_arg(
                f"input '{name}': element {i} is not valid UTF-8; PyTorch string inputs "
                "(List[str]) hold text"
            ) from None
    return out


def from_strings(items: list) -> np.ndarray:
    """A ``List[str]`` output as a 1-D BYTES array."""
    out = np.empty(len(items), dtype=object)
    for i, s in enumerate(items):
        out[i] = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return out
