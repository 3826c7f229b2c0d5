"""The JSON codec of the HTTP front end (msgspec, the standard library where msgspec differs)
and the JSON inference path over real HTTP: values exact both ways, Triton's NaN and Infinity,
Triton's words for what it refuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from http_helpers import error_of, request
from triton_core.errors import TritonError
from triton_core.frontends.http.deep_json import TOO_DEEP
from triton_core.frontends.http.json_codec import decode_json, encode_json

# decode_json ------------------------------------------------------------------------------

SAME_AS_STDLIB = [
    b'{"inputs": [{"name": "A", "shape": [1, 2], "datatype": "FP32", "data": [0.1, -0.0]}]}',
    b"[18446744073709551615, -9223372036854775808, 123456789012345678901234567890]",
    b"[-123456789012345678901234567890, 1e308, 5e-324, 1E5, -0]",
    b'{"a": 1, "a": 2}',  # the last key wins in both
    b'"h\\u00e9llo \\u2603 \\ud83d\\ude00"',
    '"h\u00e9llo \u2603"'.encode(),
    b"  [true, false, null]  ",
    b"0.30000000000000004",
]


@pytest.mark.parametrize("body", SAME_AS_STDLIB)
def test_decode_reads_what_the_standard_library_reads(body):
    got = decode_json(body)
    assert got == json.loads(body)
    # integers past 64 bits stay integers, floats keep every bit
    assert json.dumps(got) == json.dumps(json.loads(body))


def test_decode_reads_a_memoryview():
    assert decode_json(memoryview(b'{"x": [1, 2.5]}')) == {"x": [1, 2.5]}


@pytest.mark.parametrize("body, check", [
    (b"[NaN, Infinity, -Infinity]",  # Triton reads these literals
     lambda v: math.isnan(v[0]) and v[1] == math.inf and v[2] == -math.inf),
    (b"1e400", lambda v: v == math.inf),  # past double: infinity, as json reads it
    (b'"\\ud800"', lambda v: v == "\ud800"),  # a lone surrogate escape
    (b"\xef\xbb\xbf[1]", lambda v: v == [1]),  # a UTF-8 byte order mark
    ('[1, "\u00e9"]'.encode("utf-16"), lambda v: v == [1, "\u00e9"]),  # UTF-16 with its BOM
])
def test_decode_falls_back_to_the_standard_library_where_msgspec_refuses(body, check):
    assert check(decode_json(body))


def test_decode_deep_nesting_is_read_whole_and_kept_shallow():
    deep = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b', "b": 3}'
    value = decode_json(deep)
    assert value["b"] == 3 and value["a"] is not None
    inner = value["a"]
    while isinstance(inner, list):
        inner = inner[0]
    assert inner is TOO_DEEP


@pytest.mark.parametrize("body, words", [
    (b'{"inputs": [', "Expecting value"),
    (b"[1, 2", "Expecting ',' delimiter"),
    (b"", "Expecting value"),
    (b"[1] x", "Extra data"),
    (b'"\xff"', "can't decode byte 0xff"),
    (b"nan", "Expecting value"),  # Triton refuses lower-case nan too
])
def test_decode_malformed_json_is_a_400_in_the_standard_librarys_words(body, words):
    with pytest.raises(TritonError) as e:
        decode_json(body)
    assert e.value.code.http_status == 400
    assert e.value.message.startswith("failed to parse the request JSON buffer: ")
    assert words in e.value.message


# encode_json ------------------------------------------------------------------------------

@pytest.mark.parametrize("obj", [
    {"model_name": "m", "model_version": "1", "outputs": [
        {"name": "O", "datatype": "FP32", "shape": [1, 3], "data": [0.1, -0.0, 3.4e38]}]},
    {"data": [2**64 - 1, -2**63, 0, True, False, "h\u00e9llo", "\u2028", "\x00\"\\"]},
    {"big": [2**70, -2**70]},  # past 64 bits: the standard library writes them
    {"none": None, "nested": {"a": [1, [2, [3]]]}},
    [5e-324, 1e-7, 1e16, 1e22, 123456789.0],
])
def test_encode_reads_back_to_the_same_values(obj):
    out = encode_json(obj)
    assert isinstance(out, bytes) and b" " not in out.replace(b"\\u2028", b"")
    assert json.loads(out) == obj


def test_encode_writes_non_finite_floats_as_triton_does():
    out = encode_json({"data": [float("nan"), float("inf"), -float("inf"), 1.5]})
    assert out == b'{"data":[NaN,Infinity,-Infinity,1.5]}'


def test_encode_keeps_what_json_dumps_accepts_and_refuses():
    assert json.loads(encode_json({1: "one"})) == {"1": "one"}  # int keys as strings
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_encode_writes_utf8_not_escapes():
    assert encode_json(["h\u00e9llo"]) == '["h\u00e9llo"]'.encode()
    # also when NaN sends it the standard library's way
    assert encode_json(["h\u00e9llo", math.nan]) == '["h\u00e9llo",NaN]'.encode()


def test_encode_a_lone_surrogate_as_an_escape():
    # a client's own string echoed in an error message: never a failure to answer
    assert encode_json({"error": "input '\ud800'"}) == b'{"error":"input \'\\ud800\'"}'


# the JSON inference path over HTTP ("single": FP32 [4], max_batch_size 8, OUTPUT0 = 2 x INPUT0)

def _single(data, shape=(1, 4), datatype="FP32"):
    body = {"inputs": [{"name": "INPUT0", "shape": list(shape), "datatype": datatype,
                        "data": data}]}
    return json.dumps(body).encode()


def _post(addr, body):
    return request(addr, "POST", "/v2/models/single/infer", body)


def test_fp32_json_values_are_exact_both_ways(addr):
    rng = np.random.default_rng(28)
    x = (rng.standard_normal(32) * 10.0 ** rng.integers(-30, 30, 32)).astype(np.float32)
    x[:4] = [np.float32(0.1), np.finfo(np.float32).tiny, -0.0, np.float32(1e-7)]
    # the request as clients write float32: its shortest repr, or its double's repr
    for data in ([float(str(v)) for v in x], x.astype(np.float64).tolist()):
        status, _, rb = _post(addr, _single(data, shape=(8, 4)))
        assert status == 200, rb
        out = json.loads(rb)["outputs"][0]
        assert out["shape"] == [8, 4] and out["datatype"] == "FP32"
        got = np.array(out["data"], dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), (x * np.float32(2)).view(np.uint32))


def test_fp32_json_nan_and_infinity_in_and_out(addr):
    status, _, rb = _post(addr, b'{"inputs": [{"name": "INPUT0", "shape": [1, 4], '
                                b'"datatype": "FP32", "data": [NaN, Infinity, -Infinity, 1.5]}]}')
    assert status == 200, rb
    assert b'"data":[NaN,Infinity,-Infinity,3.0]' in rb  # Triton's spelling


def test_fp32_json_integers_and_nested_data(addr):
    status, _, rb = _post(addr, _single([[1, 2], [3, 4]], shape=(1, 4)))
    assert status == 200, rb
    assert json.loads(rb)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    status, _, rb = _post(addr, _single([1, 2.5, -3, 16777216]))
    assert status == 200, rb
    assert json.loads(rb)["outputs"][0]["data"] == [2.0, 5.0, -6.0, 33554432.0]


@pytest.mark.parametrize("data, words", [
    (["1", "2", "3", "4"], "expected numbers for FP32"),
    ([True, False, True, False], "expected numbers for FP32"),
    ([None, 1, 2, 3], "unable to parse 'data' of input 'INPUT0'"),
    ([1, 2, 3], "unexpected number of elements for input 'INPUT0'"),
    ([[1, 2], [3]], "unable to parse 'data' of input 'INPUT0'"),  # ragged past the count
    ([[1, 2], 3, 4], "the data has 6 (data shape [3, 2])"),  # counted along first elements
])
def test_fp32_json_data_refused(addr, data, words):
    status, _, rb = _post(addr, _single(data))
    assert status == 400, rb
    assert words in error_of(rb)


@pytest.mark.parametrize("shape", [[1, True], [1.0, 4], "1,4", [1, "4"], [1, None]])
def test_shape_must_be_json_integers(addr, shape):
    status, _, rb = _post(addr, _single([1, 2, 3, 4], shape=shape))
    assert status == 400, rb
    assert error_of(rb) == ("Unable to parse 'shape' for input 'INPUT0': expected an array "
                            "of integers")


def test_bytes_json_output_is_utf8(addr):
    texts = ["h\u00e9llo", "\u2603", "plain", "null"]
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "BYTES",
                                   "data": texts}]}).encode()
    status, _, rb = request(addr, "POST", "/v2/models/strings/infer", body)
    assert status == 200, rb
    assert '"data":["h\u00e9llo","\u2603","plain","null"]'.encode() in rb
    assert json.loads(rb)["outputs"][0]["data"] == texts


def test_a_lone_surrogate_in_a_name_gets_its_400(addr):
    body = (b'{"inputs": [{"name": "\\ud800", "shape": [1, 4], "datatype": "FP32", '
            b'"data": [1, 2, 3, 4]}]}')
    status, _, rb = _post(addr, body)
    assert status == 400, rb
    assert "\ud800" in error_of(rb)
