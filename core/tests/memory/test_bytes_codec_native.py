"""The native BYTES codec against the Python reference: round trips, truncation, huge lengths."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triton_core.errors import ErrorCode, TritonError
from triton_core.memory import _native, bytes_codec

elements = st.lists(st.binary(max_size=300), max_size=60)


def _arr(items: list[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return "ok", list(fn(*args))
    except TritonError as exc:
        return exc.code, exc.message


def test_native_is_used() -> None:
    assert _native.AVAILABLE


@given(elements)
def test_round_trip_matches_reference(items: list[bytes]) -> None:
    arr = _arr(items)
    wire = bytes_codec.serialize_bytes(arr)
    assert wire == bytes_codec._serialize_py(arr)
    back = bytes_codec.deserialize_bytes(wire, len(items))
    assert back.dtype == object and list(back) == items
    assert list(bytes_codec.deserialize_bytes(memoryview(wire))) == items


@given(st.lists(st.binary(min_size=300, max_size=2000), min_size=1, max_size=8))
def test_round_trip_large_elements(items: list[bytes]) -> None:  # the join path
    wire = bytes_codec.serialize_bytes(_arr(items))
    assert wire == bytes_codec._serialize_py(_arr(items))
    assert list(bytes_codec.deserialize_bytes(wire)) == items


@given(
    st.lists(
        st.one_of(st.text(max_size=20), st.binary(max_size=20), st.integers()),
        max_size=20,
    )
)
def test_mixed_element_types_match_reference(items: list[object]) -> None:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    assert bytes_codec.serialize_bytes(arr) == bytes_codec._serialize_py(arr)


@given(elements, st.data())
def test_truncated_buffers_fail_like_reference(
    items: list[bytes], data: st.DataObject
) -> None:
    wire = bytes_codec._serialize_py(_arr(items))
    cut = data.draw(st.integers(0, len(wire)))
    buf = wire[:cut]
    native = _outcome(bytes_codec._deserialize_native, buf, None)
    assert native == _outcome(bytes_codec._deserialize_py, buf, None)
    if native[0] != "ok":
        assert native[0] is ErrorCode.INVALID_ARG


@given(st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_huge_length_prefix_is_invalid_arg(head: bytes, length: int) -> None:
    wire = bytes_codec._serialize_py(_arr([head])) + struct.pack("<I", length) + b"xy"
    native = _outcome(bytes_codec._deserialize_native, wire, None)
    assert native == _outcome(bytes_codec._deserialize_py, wire, None)
    if length > 2:
        assert (
            native[0] is ErrorCode.INVALID_ARG
            and f"length {length} runs past" in native[1]
        )


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(buf: bytes) -> None:
    assert _outcome(bytes_codec._deserialize_native, buf, None) == _outcome(
        bytes_codec._deserialize_py, buf, None
    )


@settings(max_examples=25)
@given(elements, st.integers(0, 70))
def test_count_mismatch(items: list[bytes], count: int) -> None:
    wire = bytes_codec.serialize_bytes(_arr(items))
    assert _outcome(bytes_codec._deserialize_native, wire, count) == _outcome(
        bytes_codec._deserialize_py, wire, count
    )


def test_no_read_past_a_view_of_a_larger_buffer() -> None:
    # The length claims 8 bytes; 8 exist in the parent buffer but not in the view.
    parent = struct.pack("<I", 8) + b"12345678"
    with pytest.raises(TritonError) as info:
        bytes_codec.deserialize_bytes(memoryview(parent)[:8])
    assert info.value.code is ErrorCode.INVALID_ARG


def test_shapes_and_dtypes() -> None:
    arr = np.array([[b"a", b"bc"], [b"", b"d\x00"]], dtype=object)
    assert bytes_codec.serialize_bytes(arr) == bytes_codec._serialize_py(arr)
    assert bytes_codec.serialize_bytes(
        np.array(["x", "yé"])
    ) == bytes_codec._serialize_py(np.array(["x", "yé"]))
    assert bytes_codec.serialize_bytes(np.array([], dtype=object)) == b""
    assert list(bytes_codec.deserialize_bytes(b"", 0)) == []
    assert list(
        bytes_codec.deserialize_bytes(np.frombuffer(b"\x01\0\0\0z", np.uint8))
    ) == [b"z"]
