import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triton_core import DataType, ErrorCode, Tensor, TritonError
from triton_core.memory.bytes_codec import deserialize_bytes, serialize_bytes


def test_every_triton_type_maps_both_ways():
    for dt in DataType:
        assert DataType.from_config(dt.config_name) is dt
        assert DataType.from_wire(dt.value) is dt
    assert DataType.BYTES.config_name == "TYPE_STRING"
    assert DataType.from_numpy(np.float32) is DataType.FP32
    assert DataType.from_numpy(np.dtype(object)) is DataType.BYTES
    assert DataType.BF16.itemsize == 2


def test_unknown_types_are_invalid_arg():
    with pytest.raises(TritonError) as e:
        DataType.from_wire("FLOAT")
    assert e.value.code is ErrorCode.INVALID_ARG
    with pytest.raises(TritonError):
        DataType.from_config("TYPE_NOPE")
    for bad in (["FP32"], {"FP32": 1}, None, 3):  # what a JSON body may hold instead
        with pytest.raises(TritonError) as e:
            DataType.from_wire(bad)  # type: ignore[arg-type]
        assert e.value.code is ErrorCode.INVALID_ARG


def test_error_codes_map_to_http_and_grpc():
    assert ErrorCode.NOT_FOUND.http_status == 404
    assert ErrorCode.UNAVAILABLE.http_status == 503
    assert ErrorCode.UNSUPPORTED.http_status == 501
    assert ErrorCode.INTERNAL.http_status == 500
    assert ErrorCode.INVALID_ARG.http_status == 400
    assert ErrorCode.UNSUPPORTED.grpc_status_name == "UNIMPLEMENTED"


def test_tensor_from_raw_is_a_view_and_checks_size():
    buf = bytearray(np.arange(4, dtype="<i4").tobytes())
    t = Tensor.from_raw("x", DataType.INT32, [2, 2], memoryview(buf))
    buf[0] = 9
    assert t.as_numpy()[0, 0] == 9  # no copy
    with pytest.raises(TritonError, match="expected 16 bytes"):
        Tensor.from_raw("x", DataType.INT32, [2, 2], b"\0" * 12)


def test_tensor_bytes_round_trip():
    arr = np.array([b"a", b"", b"\xff\x00"], dtype=object)
    t = Tensor.from_numpy("s", arr)
    assert t.datatype is DataType.BYTES
    t2 = Tensor.from_raw("s", DataType.BYTES, [3], t.to_bytes())
    assert list(t2.as_numpy()) == list(arr)


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_bytes_codec_round_trip(items):
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    assert list(deserialize_bytes(serialize_bytes(arr), len(items))) == items


@given(st.binary(max_size=64))
def test_bytes_codec_never_reads_past_the_buffer(data):
    try:
        out = deserialize_bytes(data)
    except TritonError as e:
        assert e.code is ErrorCode.INVALID_ARG
    else:
        assert sum(4 + len(x) for x in out) == len(data)


def test_bytes_codec_huge_length_prefix():
    with pytest.raises(TritonError, match="runs past"):
        deserialize_bytes(b"\xff\xff\xff\xff" + b"abc")
