"""End-to-end: bad requests get the right status and an error body, and the server
serves the next request (on the same keep-alive connection and on a new one)."""

from __future__ import annotations

import gzip
import http.client
import json
import zlib

import numpy as np
import pytest

from http_helpers import assert_serves, error_of, request
from live_server import serving_http

LIMIT = 1024


@pytest.fixture(scope="module")
def server(http_server):
    return http_server


@pytest.fixture(scope="module")
def small(server):
    """The same server behind a front end with a small --http-max-input-size."""
    with serving_http(server, max_input_size=LIMIT) as a:
        yield a


GOOD = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [2] * 16}]}).encode()


def _send(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def check_bad(addr, path, body, status, headers=None, contains=None, method="POST"):
    """The bad request answers `status` and {"error"}; then a good one on the same connection
    and on new connections succeeds."""
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        got, rb = _send(conn, method, path, body, headers or {})
        assert got == status, rb
        msg = error_of(rb)
        if contains:
            assert contains.lower() in msg.lower(), msg
        # the connection stays usable (keep-alive), even when the body was refused unread
        got, rb = _send(conn, "POST", "/v2/models/add/infer", GOOD, {})
        assert got == 200, rb
        assert json.loads(rb)["outputs"][0]["data"] == [i + 2 for i in range(16)]
    finally:
        conn.close()
    assert_serves(addr)
    return msg


def _inp(name="INPUT0", shape=(1, 16), datatype="INT32", **kw):
    d = {"name": name, "shape": list(shape), "datatype": datatype}
    d.update(kw)
    return d


def _body(*inputs, **extra):
    return json.dumps({"inputs": list(inputs), **extra}).encode()


OK1 = _inp("INPUT1", data=[0] * 16)

BAD_JSON_CASES = {
    "malformed json": (b'{"inputs": [', "parse"),
    "not utf-8": (b'{"inputs": "\xff\xfe"}', None),
    "empty body": (b"", None),
    "json array": (b"[1, 2, 3]", None),
    "inputs not a list": (b'{"inputs": {}}', "inputs"),
    "input without name": (_body({"shape": [1, 16], "datatype": "INT32", "data": [0] * 16}, OK1),
                           "name"),
    "unknown datatype": (_body(_inp(datatype="INT33", data=[0] * 16), OK1), None),
    "wrong datatype": (_body(_inp(datatype="FP32", data=[0.5] * 16), OK1), "FP32"),
    "wrong shape": (_body(_inp(shape=(1, 8), data=[0] * 8), _inp("INPUT1", shape=(1, 8), data=[0] * 8)),
                    "shape"),
    "shape not a list": (_body(_inp(shape=(), data=[0] * 16) | {"shape": "1,16"}, OK1), "shape"),
    "shape of floats": (_body(_inp(data=[0] * 16) | {"shape": [1.0, 16.0]}, OK1), "shape"),
    "negative dim": (_body(_inp(shape=(-1, 16), data=[0] * 16), OK1), None),
    "batch too large": (_body(_inp(shape=(9, 16), data=[0] * 144),
                              _inp("INPUT1", shape=(9, 16), data=[0] * 144)), "batch"),
    "data shorter than shape": (_body(_inp(data=[0] * 15), OK1), "INPUT0"),
    "data longer than shape": (_body(_inp(data=[0] * 17), OK1), "INPUT0"),
    "ragged nested data": (_body(_inp(shape=(2, 2), data=[[1, 2], [3]]), OK1), None),
    "strings for INT32": (_body(_inp(data=["a"] * 16), OK1), None),
    "no data": (_body(_inp(), OK1), "data"),
    "missing input": (_body(OK1), "INPUT0"),
    "unexpected input": (_body(_inp(data=[0] * 16), OK1, _inp("X", data=[0] * 16)), "X"),
    "duplicate input": (_body(_inp(data=[0] * 16), OK1, OK1), "INPUT1"),
    "unknown output": (_body(_inp(data=[0] * 16), OK1, outputs=[{"name": "NOPE"}]), "NOPE"),
    "outputs not a list": (_body(_inp(data=[0] * 16), OK1, outputs={"name": "OUTPUT0"}), "outputs"),
    "parameters not an object": (_body(_inp(data=[0] * 16), OK1, parameters=[1]), "parameters"),
    "triton_ parameter": (_body(_inp(data=[0] * 16), OK1, parameters={"triton_x": 1}), "triton_"),
    "bad priority": (_body(_inp(data=[0] * 16), OK1, parameters={"priority": -1}), "priority"),
    "bad timeout": (_body(_inp(data=[0] * 16), OK1, parameters={"timeout": "soon"}), "timeout"),
    "id not a string": (_body(_inp(data=[0] * 16), OK1, id=5), "id"),
    "floats for INT32": (_body(_inp(data=[1.5] * 16), OK1), "INT32"),
    "bools for INT32": (_body(_inp(data=[True] * 16), OK1), "INT32"),
    "INT32 out of range": (_body(_inp(data=[2**40] * 16), OK1), "INT32"),
    "binary_data_output not bool": (_body(_inp(data=[0] * 16), OK1,
                                          parameters={"binary_data_output": "yes"}), "binary_data_output"),
    "binary_data not bool": (_body(_inp(data=[0] * 16), OK1, outputs=[
        {"name": "OUTPUT0", "parameters": {"binary_data": "no"}}]), "binary_data"),
    "negative sequence_id": (_body(_inp(data=[0] * 16), OK1, parameters={"sequence_id": -5}),
                             "sequence_id"),
    "bool sequence_id": (_body(_inp(data=[0] * 16), OK1, parameters={"sequence_id": True}),
                         "sequence_id"),
    "data and binary size": (_body(_inp(data=[0] * 16, parameters={"binary_data_size": 64}), OK1),
                             None),
}


@pytest.mark.parametrize("case", list(BAD_JSON_CASES))
def test_bad_json_infer_400(addr, case):
    body, contains = BAD_JSON_CASES[case]
    check_bad(addr, "/v2/models/add/infer", body, 400, contains=contains)


@pytest.mark.parametrize("count", [-1, "x", True, 2.5])
def test_bad_classification_count(addr, count):
    body = _body(_inp(shape=(1, 5), datatype="FP32", data=[1, 2, 3, 4, 5]),
                 outputs=[{"name": "OUTPUT0", "parameters": {"classification": count}}])
    check_bad(addr, "/v2/models/cls/infer", body, 400, contains="classification")


def test_classification_of_bytes_output(addr):
    body = _body(_inp(shape=(2,), datatype="BYTES", data=["a", "b"]),
                 outputs=[{"name": "OUTPUT0", "parameters": {"classification": 1}}])
    check_bad(addr, "/v2/models/strings/infer", body, 400,
              contains="class result not available for output due to unsupported type 'BYTES'")


def test_fp16_and_bf16_in_json_refused(addr):
    body = _body(_inp(shape=(3,), datatype="FP16", data=[1.0, 2.0, 3.0]))
    check_bad(addr, "/v2/models/half/infer", body, 400, contains="FP16")
    body = _body(_inp(shape=(3,), datatype="BF16", data=[1.0, 2.0, 3.0]))
    check_bad(addr, "/v2/models/half/infer", body, 400, contains="BF16")


def _binary(header_inputs, payload, hlen=None, **extra):
    header = json.dumps({"inputs": header_inputs, **extra}).encode()
    n = len(header) if hlen is None else hlen
    return header + payload, {"Inference-Header-Content-Length": str(n)}


def test_binary_size_not_matching_shape(addr):
    body, h = _binary([_inp(parameters={"binary_data_size": 60}), OK1], b"\0" * 60)
    check_bad(addr, "/v2/models/add/infer", body, 400, h)
    body, h = _binary([_inp(parameters={"binary_data_size": 68}), OK1], b"\0" * 68)
    check_bad(addr, "/v2/models/add/infer", body, 400, h)


def test_binary_size_beyond_body(addr):
    body, h = _binary([_inp(parameters={"binary_data_size": 64}), OK1], b"\0" * 10)
    check_bad(addr, "/v2/models/add/infer", body, 400, h)
    body, h = _binary([_inp(parameters={"binary_data_size": -64}), OK1], b"")
    check_bad(addr, "/v2/models/add/infer", body, 400, h)


def test_binary_extra_bytes_after_inputs(addr):
    body, h = _binary([_inp(parameters={"binary_data_size": 64}), OK1], b"\0" * 70)
    check_bad(addr, "/v2/models/add/infer", body, 400, h)


def test_header_length_beyond_body(addr):
    body, h = _binary([_inp(data=[0] * 16), OK1], b"", hlen=10_000)
    check_bad(addr, "/v2/models/add/infer", body, 400, h, contains="Inference-Header-Content-Length")
    for bad in ("-1", "abc", "1e3"):
        check_bad(addr, "/v2/models/add/infer", GOOD, 400,
                  {"Inference-Header-Content-Length": bad})


def test_bad_version_in_url(addr):
    # Triton's words (GetModelVersionFromString): its clients match on them
    check_bad(addr, "/v2/models/add/versions/wrong/infer", GOOD, 400,
              contains="failed to get model version from specified version string 'wrong'")


def test_header_length_cuts_json(addr):
    body, h = _binary([_inp(data=[0] * 16), OK1], b"", hlen=20)
    check_bad(addr, "/v2/models/add/infer", body, 400, h)


def test_bad_bytes_binary(addr):
    # BYTES element length prefix past the buffer; truncated prefix
    for payload in (b"\x05\0\0\0ab", b"\x01\0"):
        body, h = _binary([_inp(shape=(1,), datatype="BYTES",
                                parameters={"binary_data_size": len(payload)})], payload)
        check_bad(addr, "/v2/models/strings/infer", body, 400, h)


@pytest.mark.parametrize("path, status", [
    ("/v2/models/nope/infer", 404),
    ("/v2/models/add/versions/3/infer", 404),
    ("/v2/models/add/versions/abc/infer", 400),
    ("/v2/models/add/versions/1.0/infer", 400),
])
def test_unknown_model_version_and_bad_version(addr, path, status):
    check_bad(addr, path, GOOD, status)


# size limits -----------------------------------------------------------------------------

def test_small_limit_allows_small_bodies(small):
    status, _, rb = request(small, "POST", "/v2/models/add/infer", GOOD)
    assert len(GOOD) < LIMIT and status == 200, rb


def test_oversize_body_content_length(small):
    body = _body(_inp(data=[0] * 16), _inp("INPUT1", data=[123456789] * 200))
    assert len(body) > LIMIT
    msg = check_bad(small, "/v2/models/add/infer", body, 400, contains="size")
    assert str(LIMIT) in msg
    # a body of JSON only: Triton's words, which its QA tests match on
    assert msg == (f"request JSON size of {len(body)} bytes exceeds the maximum allowed input "
                   f"size of {LIMIT} bytes. Use --http-max-input-size to increase the limit.")
    big = b" " * (200 * 1024)  # a large body is refused from Content-Length, not read whole
    check_bad(small, "/v2/models/add/infer", big, 400, contains="size")
    # other routes are limited too
    check_bad(small, "/v2/repository/index", b" " * (LIMIT + 1), 400, contains="size")
    # generate bodies are JSON whatever their headers say (Triton's
    # test_json_dtype_size_expansion_exceeds_limit_error sends Inference-Header-Content-Length)
    msg = check_bad(small, "/v2/models/add/generate", body, 400,
                    {"Inference-Header-Content-Length": "10"})
    assert msg.startswith(f"request JSON size of {len(body)} bytes exceeds the maximum allowed")


def test_oversize_chunked_body(small):
    host, port = small.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        chunks = (b" " * 512 for _ in range(8))
        conn.request("POST", "/v2/models/add/infer", body=chunks, encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        assert r.status == 400
        assert "size" in error_of(r.read())
    finally:
        conn.close()
    assert_serves(small)


@pytest.mark.parametrize("algo", ["gzip", "deflate"])
def test_decompression_bomb(small, algo):
    plain = b" " * (10 * 1024 * 1024)
    comp = gzip.compress(plain, 9) if algo == "gzip" else zlib.compress(plain, 9)
    assert len(comp) < LIMIT * 12
    if len(comp) >= LIMIT:  # keep the compressed body under the limit: only expansion is over
        plain = b" " * (512 * 1024)
        comp = gzip.compress(plain, 9) if algo == "gzip" else zlib.compress(plain, 9)
    assert len(comp) < LIMIT
    check_bad(small, "/v2/models/add/infer", comp, 400, {"Content-Encoding": algo}, contains="size")
    # a compressed body under the limit once expanded is fine
    comp = gzip.compress(GOOD) if algo == "gzip" else zlib.compress(GOOD)
    status, _, rb = request(small, "POST", "/v2/models/add/infer", comp, {"Content-Encoding": algo})
    assert status == 200, rb


def test_bad_requests_do_not_count_as_model_success(server, addr):
    before = server.statistics("add")["model_stats"][0]["inference_stats"]["success"]["count"]
    check_bad(addr, "/v2/models/add/infer", _body(_inp(data=[0] * 15), OK1), 400)
    after = server.statistics("add")["model_stats"][0]["inference_stats"]["success"]["count"]
    assert after == before + 2  # the two good inferences of check_bad, not the bad one


# client errors that once were 500s -------------------------------------------------------

def test_deeply_nested_json_400(addr):
    # JSON of any depth is parsed (as Triton does), then its deep values refused as values
    # of the wrong kind
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    check_bad(addr, "/v2/models/add/infer", deep, 400, contains="input")
    check_bad(addr, "/v2/models/add/generate", b"[" * 100_000 + b"]" * 100_000, 400)
    # Triton's test_repository_index_deeply_nested_json, in its words
    index = b'{"ready":' + b"[" * 250_000 + b"true" + b"]" * 250_000 + b"}"
    check_bad(addr, "/v2/repository/index", index, 400,
              contains="Invalid value for 'ready': expected a boolean")
    # deep and malformed: a parse error
    check_bad(addr, "/v2/repository/index", b'{"ready":' + b"[" * 100_000 + b"}", 400,
              contains="failed to parse the request JSON buffer")


def test_deep_json_is_checked_whole_and_kept_shallow():
    from triton_core.errors import TritonError
    from triton_core.frontends.http.deep_json import KEPT_DEPTH, TOO_DEEP, parse_deep_json

    value = parse_deep_json(b'{"a": [1, 2.5, "x", null, true, {"b": {}}], "c": '
                            + b"[" * 5000 + b"]" * 5000 + b"}")
    assert value["a"] == [1, 2.5, "x", None, True, {"b": {}}]
    inner = value["c"]
    for _ in range(KEPT_DEPTH - 1):
        (inner,) = inner
    assert inner is TOO_DEEP  # KEPT_DEPTH containers in all, the root object included
    for bad in (b"[" * 5000 + b"]" * 4999, b"[" * 5000 + b"1,]" + b"]" * 4999, b""):
        with pytest.raises(TritonError, match="failed to parse the request JSON buffer"):
            parse_deep_json(bad)


def _nested(levels: int, value):
    for _ in range(levels):
        value = [value]
    return value


def test_deeply_nested_data_400(addr):
    # parseable JSON, but data nested past Triton's bound, refused in its words (its
    # test_json_recursion_depth_limit matches on them)
    for levels in (100, 200):
        for inp in (_inp(data=_nested(levels, 0)), _inp(datatype="BYTES", data=_nested(levels, "a"))):
            check_bad(addr, "/v2/models/add/infer", _body(inp, OK1), 400,
                      contains="JSON nesting depth exceeds maximum allowed limit (100)")


@pytest.mark.parametrize("levels", [2, 50, 99])
def test_nested_data_is_read_in_order_whatever_its_nesting(addr, levels):
    # Triton reads 'data' element by element in order, whatever its nesting
    data = _nested(levels - 1, list(range(16)))
    status, _, rb = request(addr, "POST", "/v2/models/add/infer",
                            _body(_inp(shape=(1, 16), data=data), OK1))
    assert status == 200, rb
    assert json.loads(rb)["outputs"][0]["data"] == list(range(16))


@pytest.mark.parametrize("shape", [[2**62, 2**62], [2**64], [0, 2**70]])
def test_shape_past_int64_400(addr, shape):
    for inp in (_inp(shape=shape, data=[0] * 16),
                _inp(shape=shape, datatype="BYTES", data=["a"] * 16)):
        check_bad(addr, "/v2/models/add/infer", _body(inp, OK1), 400, contains="shape")
    body, h = _binary([_inp(shape=shape, parameters={"binary_data_size": 64}), OK1], b"\0" * 64)
    msg = check_bad(addr, "/v2/models/add/infer", body, 400, h)
    # Triton's words, when every dimension fits an int64 but their product does not
    assert "int64" in msg or "causes total element count to exceed maximum size of" in msg


def test_byte_size_past_int64_400_in_tritons_words(addr):
    # Triton's test_buffer_size_overflow: the count fits an int64, its bytes do not
    msg = check_bad(addr, "/v2/models/add/infer",
                    _body(_inp(shape=[4, 2**60 + 2], data=[1]), OK1), 400)
    assert msg == ("byte size overflow for input 'INPUT0': element count (4611686018427387912) "
                   "* data type size (4) exceeds maximum allowed size (9223372036854775807)")


GEN_OK = {"INPUT0": list(range(16)), "INPUT1": [1] * 16}


@pytest.mark.parametrize("params, contains", [
    ({"priority": "abc"}, "priority"),
    ({"priority": -1}, "priority"),
    ({"timeout": 1.5}, "timeout"),
    ({"sequence_id": [1]}, "sequence_id"),
])
def test_generate_bad_parameters_400(addr, params, contains):
    check_bad(addr, "/v2/models/add/generate",
              json.dumps({**GEN_OK, "parameters": params}).encode(), 400, contains=contains)


@pytest.mark.parametrize("value", [[1.5] * 16, [2**40] * 16, [True] * 16, ["a"] * 16])
def test_generate_no_silent_truncation(addr, value):
    check_bad(addr, "/v2/models/add/generate", json.dumps({**GEN_OK, "INPUT0": value}).encode(),
              400, contains="INPUT0")
    status, _, rb = request(addr, "POST", "/v2/models/add/generate", json.dumps(GEN_OK))
    assert status == 200 and json.loads(rb)["OUTPUT0"] == [i + 1 for i in range(16)], rb


# BYTES inputs are counted against the shape before anything per element is made ----------

BIG = 8_000_000  # elements: building them one by one took seconds; counting takes none


def test_bytes_json_count_mismatch_refused(addr):
    # Over HTTP with fewer elements than BIG: the server parses the JSON on its loop (8 M
    # elements took over a second on a loaded machine, which the loop watchdog reports).
    n = BIG // 8
    body = _body(_inp(shape=(4,), datatype="BYTES", data=[""] * n))
    msg = check_bad(addr, "/v2/models/strings/infer", body, 400, contains="INPUT0")
    assert str(n) in msg
    nested = _body(_inp(shape=(4,), datatype="BYTES", data=[[""] * 1000] * (n // 1000)))
    check_bad(addr, "/v2/models/strings/infer", nested, 400, contains="elements")


@pytest.mark.parametrize("data", [[""] * BIG, [[""] * 1000] * (BIG // 1000)], ids=["flat", "nested"])
def test_bytes_json_count_checked_before_conversion(data):
    """The parsed header's data is refused before anything per element is made: the old
    conversion built object arrays of every element (64 MB here) before counting."""
    import tracemalloc

    from triton_core.errors import ErrorCode, TritonError
    from triton_core.frontends.http.infer import parse_request

    header = {"inputs": [_inp(shape=(4,), datatype="BYTES", data=data)]}
    tracemalloc.start()
    try:
        with pytest.raises(TritonError) as e:
            parse_request("strings", None, header, memoryview(b""))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert e.value.code is ErrorCode.INVALID_ARG and str(BIG) in e.value.message


def test_bytes_binary_count_mismatch_refused(addr):
    payload = b"\0\0\0\0" * BIG  # BIG empty elements, 4 declared
    body, h = _binary([_inp(shape=(4,), datatype="BYTES",
                            parameters={"binary_data_size": len(payload)})], payload)
    msg = check_bad(addr, "/v2/models/strings/infer", body, 400, h)
    assert str(BIG) in msg and "4" in msg


def test_bytes_inputs_still_round_trip(addr):
    for data in (["a", "bé", ""], [["a", "b"], ["c", "d"]], [1, 2.5, True]):
        arr = np.array(data, dtype=object)
        status, _, rb = request(addr, "POST", "/v2/models/strings/infer",
                                _body(_inp(shape=(arr.size,), datatype="BYTES", data=data)))
        assert status == 200, rb
        want = [x if isinstance(x, str) else str(x) for x in arr.reshape(-1)]
        assert json.loads(rb)["outputs"][0]["data"] == want
    binary = b"".join(len(x).to_bytes(4, "little") + x for x in (b"x", b"", b"yz"))
    body, h = _binary([_inp(shape=(3,), datatype="BYTES",
                            parameters={"binary_data_size": len(binary)})], binary)
    status, _, rb = request(addr, "POST", "/v2/models/strings/infer", body, h)
    assert status == 200 and json.loads(rb)["outputs"][0]["data"] == ["x", "", "yz"], rb
    # ragged nested strings are refused
    check_bad(addr, "/v2/models/strings/infer",
              _body(_inp(shape=(3,), datatype="BYTES", data=[["a", "b"], ["c"]])), 400)


def test_binary_bytes_input_decoded_only_when_read():
    """A binary BYTES input is checked (count, bounds) but not decoded until a reader asks:
    backends that pass the wire form on make no per-element objects."""
    import tracemalloc

    from triton_core.frontends.http.infer import parse_request

    n = 1_000_000
    payload = b"\1\0\0\0x" * n
    header = {"inputs": [_inp(shape=(n,), datatype="BYTES",
                              parameters={"binary_data_size": len(payload)})]}
    tracemalloc.start()
    try:
        req, _ = parse_request("strings", None, header, memoryview(payload))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    t = req.inputs["INPUT0"]
    assert bytes(t.to_bytes()) == payload
    arr = t.as_numpy()
    assert arr.shape == (n,) and arr[0] == b"x" and arr[-1] == b"x"


def test_raw_binary_requests_refused_with_tritons_words(addr):
    """Inference-Header-Content-Length 0 (the body is one input's data): Triton's messages."""
    status, _, body = request(addr, "POST", "/v2/models/add/infer", b"\0" * 64,
                              {"Inference-Header-Content-Length": "0"})
    assert status == 400
    assert ("Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in "
            "'add' model configuration") in error_of(body)


def test_raw_binary_request_with_two_variable_dims_refused_with_tritons_words():
    from triton_core.config import parse_pbtxt
    from triton_core.errors import TritonError
    from triton_core.frontends.http.infer import raw_request

    cfg = parse_pbtxt('name: "v" backend: "expr" max_batch_size: 0 '
                      'input [{ name: "IN" data_type: TYPE_FP32 dims: [-1, -1] }] '
                      'output [{ name: "OUT" data_type: TYPE_FP32 dims: [-1, -1] }]')
    with pytest.raises(TritonError) as e:
        raw_request("v", None, memoryview(b"\0" * 16), cfg)
    assert ("The shape of the raw input 'IN' can not be deduced because there are more than one "
            "variable-sized dimension") in e.value.message


def _one_input(dtype: str, dims: str, batch: int = 0):
    from triton_core.config import parse_pbtxt
    return parse_pbtxt(f'name: "r" backend: "expr" max_batch_size: {batch} '
                       f'input [{{ name: "IN" data_type: {dtype} dims: {dims} }}] '
                       f'output [{{ name: "OUT" data_type: {dtype} dims: {dims} }}]')


def test_raw_binary_bytes_request_is_one_element():
    # Triton's test_byte: the whole body is the one BYTES element (shape [1])
    from triton_core.frontends.http.infer import raw_request

    for batch, shape in ((0, [1]), (8, [1, 1])):
        req = raw_request("r", None, memoryview(b"427\xff"), _one_input("TYPE_STRING", "[1]", batch))
        t = req.inputs["IN"]
        assert list(t.shape) == shape
        assert t.as_numpy().reshape(-1).tolist() == [b"427\xff"]
    assert raw_request("r", None, memoryview(b""), _one_input("TYPE_STRING", "[1]")
                       ).inputs["IN"].as_numpy().tolist() == [b""]


@pytest.mark.parametrize("dims", ["[-1]", "[2]", "[1, -1]"])
def test_raw_binary_bytes_request_needs_shape_one(dims):
    from triton_core.errors import TritonError
    from triton_core.frontends.http.infer import raw_request

    with pytest.raises(TritonError) as e:
        raw_request("r", None, memoryview(b"427"), _one_input("TYPE_STRING", dims))
    assert "For BYTE datatype raw input 'IN', the model must have input shape [1]" in e.value.message


def test_a_requested_output_named_twice_is_refused(addr):
    body = json.dumps({"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}],
        "outputs": [{"name": "OUTPUT0"}, {"name": "OUTPUT0"}]})
    status, _, out = request(addr, "POST", "/v2/models/add/infer", body)
    assert status == 400 and "output 'OUTPUT0' already exists in request" in error_of(out)
    assert_serves(addr)
