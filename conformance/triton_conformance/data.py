"""Test data and expected results, computed here with numpy (never by the backend).

Arrays are in the core's native form: fixed-size types as numpy arrays of
``DataType.numpy`` (BF16 as raw uint16), BYTES as object arrays of ``bytes``.
"""

from __future__ import annotations

import numpy as np

from triton_core.dtypes import DataType

ALL_DTYPES = tuple(dt.value for dt in DataType)

TEXT_ELEMENTS = [b"", b"a", "h\u00e9llo w\u00f6rld".encode(), b"x" * 100, "\u2603".encode(), b"0"]
BINARY_ELEMENTS = [b"\x00", b"\xff\xfe\xfd", b"\x80abc\x00", bytes(range(256))]


def bf16_to_fp32(u16: np.ndarray) -> np.ndarray:
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def fp32_to_bf16(f32: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(f32, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0, binary: bool = True) -> np.ndarray:
    """Deterministic values of ``dtype`` covering the type's range; no NaN (comparisons are exact)."""
    rng = np.random.default_rng(seed)
    dt = DataType(dtype)
    n = int(np.prod(shape)) if shape else 1
    if dt is DataType.BYTES:
        pool = TEXT_ELEMENTS + (BINARY_ELEMENTS if binary else [])
        out = np.empty(n, dtype=object)
        for i in range(n):
            out[i] = pool[int(rng.integers(len(pool)))]
        return out.reshape(shape)
    if dt is DataType.BOOL:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt is DataType.BF16:
        return fp32_to_bf16((rng.integers(-512, 512, size=shape) / 4).astype(np.float32))
    if dt is DataType.FP16:
        return (rng.integers(-2048, 2048, size=shape) / 8).astype(np.float16)
    np_dt = dt.numpy
    if np_dt.kind in "iu":
        info = np.iinfo(np_dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=np_dt, endpoint=True)
        if a.size >= 2:  # always include both extremes
            a.reshape(-1)[0], a.reshape(-1)[-1] = info.min, info.max
        return a
    return (rng.standard_normal(size=shape) * 1000).astype(np_dt)


def add_sub(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The add_sub role's expected outputs (wrapping integer arithmetic, as numpy)."""
    with np.errstate(over="ignore"):
        return a + b, a - b


def small_sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values whose sum and difference stay in range (for add_sub)."""
    rng = np.random.default_rng(seed)
    dt = DataType(dtype)
    if dt is DataType.BF16:
        return fp32_to_bf16(rng.integers(-64, 64, size=shape).astype(np.float32))
    if dt.numpy.kind == "u":
        return rng.integers(50, 100, size=shape).astype(dt.numpy)
    return rng.integers(-100, 100, size=shape).astype(dt.numpy)


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "output") -> None:
    """Exact equality of shape, dtype family and values."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype == object:
        g = [bytes(x) for x in got.reshape(-1)]
        w = [bytes(x) for x in want.reshape(-1)]
        bad = [i for i, (x, y) in enumerate(zip(g, w, strict=True)) if x != y]
        assert not bad, f"{what}: element {bad[0]} is {g[bad[0]]!r}, expected {w[bad[0]]!r}"
        return
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    np.testing.assert_array_equal(got, want, err_msg=what)
