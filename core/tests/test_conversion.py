"""Values of another type convert to an input's datatype only when no value changes."""

from __future__ import annotations

import numpy as np
import pytest

from triton_core.conversion import lossless_array
from triton_core.dtypes import DataType


@pytest.mark.parametrize("datatype, value, expected", [
    (DataType.INT32, np.arange(4, dtype=np.int64), np.arange(4, dtype=np.int32)),
    (DataType.INT32, [1, 2], np.array([1, 2], np.int32)),
    (DataType.FP32, [1, 2], np.array([1.0, 2.0], np.float32)),
    (DataType.FP32, np.array([1.5]), np.array([1.5], np.float32)),
    (DataType.UINT8, np.array([0, 255]), np.array([0, 255], np.uint8)),
    (DataType.BOOL, [True, False], np.array([True, False])),
    (DataType.INT64, np.zeros(0, np.float64), np.zeros(0, np.int64)),
])
def test_lossless_conversions(datatype, value, expected):
    out = lossless_array(datatype, value)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("datatype, value, words", [
    (DataType.INT32, np.array([1.7], np.float32), "expected integers in the range of INT32"),
    (DataType.INT32, [2**40], "expected integers in the range of INT32"),
    (DataType.UINT8, [-1], "expected integers in the range of UINT8"),
    (DataType.BOOL, [1, 0], "expected booleans"),
    (DataType.INT32, [True], "expected numbers for INT32"),
    (DataType.FP32, ["a"], "expected numbers for FP32"),
    (DataType.INT32, [[1], [2, 3]], "ragged data"),
])
def test_conversions_that_would_change_a_value_are_refused(datatype, value, words):
    with pytest.raises(ValueError, match=words):
        lossless_array(datatype, np.array(value, dtype=object) if words == "ragged data" else value)
