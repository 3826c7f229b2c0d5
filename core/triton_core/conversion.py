"""Numbers given as Python or numpy values, converted to a tensor datatype without loss.

The HTTP front end's JSON data and the in-process API (`server.model(...).infer`) take
values whose type is not the input's datatype. Both refuse what would change a value:
1.7 into INT32 (truncation), 2**40 into INT32 (wrap-around), a number into BOOL, text into a
number. Integers into floating point and FP64 into FP32 convert, as Triton's JSON does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import DataType


def lossless_array(datatype: DataType, value: Any) -> np.ndarray:
    """``value`` as an array of ``datatype`` (BYTES and BF16 excepted: see the callers);
    raises ValueError saying what does not fit."""
    arr = np.asarray(value)
    kind = arr.dtype.kind
    target = datatype.numpy
    if kind == "f" and target.kind == "f":  # JSON's numbers into FP32/FP64: the common case
        return arr.astype(target, copy=False)
    if kind == "O":
        raise ValueError("ragged data")
    if arr.dtype == target or not arr.size:
        return arr.astype(target, copy=False)
    if datatype is DataType.BOOL:
        raise ValueError("expected booleans")
    if kind not in "iuf":
        raise ValueError(f"expected numbers for {datatype.value}")
    if target.kind in "iu":
        # no silent truncation or wrap-around: integers that fit the datatype
        info = np.iinfo(target)
        if kind == "f" or arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"expected integers in the range of {datatype.value}")
    return arr.astype(target, copy=False)
