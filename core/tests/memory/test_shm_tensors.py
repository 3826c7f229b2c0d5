"""Tensor descriptors in shared memory: layout, round trips, checks of hostile records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.memory import _native, shm
from triton_core.memory import tensors as shm_tensors
from triton_core.memory.tensors import TensorDescriptor


def test_layout_matches_c_struct() -> None:
    ffi = _native.ffi
    assert ffi.sizeof("tc_tensor_desc") == shm_tensors.DESCRIPTOR_SIZE == 152
    assert ffi.alignof("tc_tensor_desc") == shm_tensors.DESCRIPTOR_ALIGN
    offsets = {
        f: ffi.offsetof("tc_tensor_desc", f)
        for f in ("name", "dtype", "ndim", "shape", "byte_offset", "byte_size")
    }
    assert offsets == {
        "name": 0,
        "dtype": 64,
        "ndim": 68,
        "shape": 72,
        "byte_offset": 136,
        "byte_size": 144,
    }


descriptors = st.builds(
    TensorDescriptor,
    name=st.text(min_size=0, max_size=20).filter(lambda s: "\0" not in s),
    dtype=st.sampled_from(list(DataType)),
    shape=st.lists(st.integers(0, 2**40), max_size=8).map(tuple),
    byte_offset=st.integers(0, 512),
    byte_size=st.integers(0, 512),
)


@given(st.lists(descriptors, max_size=4))
def test_round_trip(descs: list[TensorDescriptor]) -> None:
    buf = bytearray(1024 + 8 * 152)
    used = shm_tensors.write_descriptors(buf, 8, descs)
    assert used == len(descs) * 152
    assert shm_tensors.read_descriptors(buf, 8, len(descs)) == descs


def test_round_trip_through_shared_memory(shm_key: str) -> None:
    desc = TensorDescriptor("OUTPUT0", DataType.BYTES, (2, 3), 4096, 100)
    with shm.SharedMemoryRegion.create(shm_key, 8192) as writer:
        shm_tensors.write_descriptor(writer.buffer(), 0, desc)
        with shm.SharedMemoryRegion.open(shm_key, writable=False) as reader:
            assert shm_tensors.read_descriptor(reader.buffer(), 0) == desc


@pytest.mark.parametrize(
    "desc",
    [
        TensorDescriptor("x" * 64, DataType.FP32, (1,), 0, 4),
        TensorDescriptor("a\0b", DataType.FP32, (1,), 0, 4),
        TensorDescriptor("x", DataType.FP32, (1,) * 9, 0, 4),
        TensorDescriptor("x", DataType.FP32, (-1,), 0, 4),
        TensorDescriptor("x", DataType.FP32, (1,), -1, 4),
    ],
)
def test_write_refuses_what_does_not_fit(desc: TensorDescriptor) -> None:
    with pytest.raises(TritonError) as info:
        shm_tensors.write_descriptor(bytearray(256), 0, desc)
    assert info.value.code is ErrorCode.INVALID_ARG


@pytest.mark.parametrize("offset", [-8, 4, 256 - 151, 256])
def test_record_must_be_aligned_and_inside(offset: int) -> None:
    with pytest.raises(TritonError):
        shm_tensors.write_descriptor(
            bytearray(256), offset, TensorDescriptor("x", DataType.INT8, (), 0, 0)
        )


def _corrupt(field: str, value: object) -> bytearray:
    buf = bytearray(512)
    shm_tensors.write_descriptor(
        buf, 0, TensorDescriptor("t", DataType.FP32, (2,), 256, 8)
    )
    rec = _native.ffi.cast("tc_tensor_desc *", _native.ffi.from_buffer(buf))
    if field == "name":
        _native.ffi.memmove(rec.name, b"n" * 64, 64)
    elif field == "shape":
        rec.shape[0] = value
    else:
        setattr(rec, field, value)
    return buf


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("name", None, "NUL"),
        ("ndim", 9, "ndim"),
        ("ndim", -1, "ndim"),
        ("shape", -5, "negative"),
        ("byte_offset", 2**64 - 1, "outside"),
        ("byte_size", 2**64 - 1, "outside"),
        ("byte_size", 257, "outside"),
        ("dtype", 0, "data type"),
        ("dtype", 15, "data type"),
    ],
)
def test_read_checks_hostile_records(field: str, value: object, why: str) -> None:
    buf = _corrupt(field, value)
    with pytest.raises(TritonError) as info:
        shm_tensors.read_descriptor(buf, 0)
    assert why in info.value.message
    # the arena may be smaller than the buffer holding the records
    if field == "byte_size" and value == 257:
        return
    ok = _corrupt("byte_size", 8)
    with pytest.raises(TritonError):
        shm_tensors.read_descriptor(ok, 0, arena_size=263)
