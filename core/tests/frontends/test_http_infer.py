"""End-to-end: the infer route over real HTTP: JSON, binary extension, BYTES, outputs,
classification, compression."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from http_helpers import LABELS, add_inputs, assert_serves, error_of, request


def _infer_json(addr, model, body, headers=None, path=None):
    status, hdrs, rb = request(addr, "POST", path or f"/v2/models/{model}/infer",
                               json.dumps(body), headers)
    return status, hdrs, rb


def _split_binary(hdrs, body):
    """(json header, binary tail) of a binary-extension response."""
    hlen = int(hdrs["inference-header-content-length"])
    return json.loads(body[:hlen]), body[hlen:]


# tritonclient: binary and JSON both ways ----------------------------------------------------

@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_add_sub(client, binary_in, binary_out):
    a, b, ins = add_inputs(batch=3, binary=binary_in)
    outs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out)]
    res = client.infer("add", ins, outputs=outs, request_id="req-7")
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    r = res.get_response()
    assert r["model_name"] == "add" and r["model_version"] == "1" and r["id"] == "req-7"
    o0 = res.get_output("OUTPUT0")
    assert o0["datatype"] == "INT32" and o0["shape"] == [3, 16]
    assert ("data" in o0) is not binary_out
    assert ("binary_data_size" in o0.get("parameters", {})) is binary_out


def test_versions_in_url(client):
    a, b, ins = add_inputs()
    for v in ("1", "2"):
        res = client.infer("multi", ins, model_version=v)
        assert res.get_response()["model_version"] == v
    assert client.infer("multi", ins).get_response()["model_version"] == "2"


def test_requested_outputs_subset(client):
    a, b, ins = add_inputs()
    res = client.infer("add", ins, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert res.as_numpy("OUTPUT0") is None


# raw JSON: nested and flat data, binary_data_output, per-output binary_data -------------------

def _add_body(nested: bool, **extra):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    data0 = a.tolist() if nested else a.reshape(-1).tolist()
    body = {"inputs": [{"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": data0},
                       {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": [1] * 32}]}
    body.update(extra)
    return a, body


@pytest.mark.parametrize("nested", [True, False])
def test_json_nested_and_flat(addr, nested):
    a, body = _add_body(nested, id="abc")
    status, hdrs, rb = _infer_json(addr, "add", body)
    assert status == 200, rb
    assert hdrs["content-type"].startswith("application/json")
    assert "inference-header-content-length" not in hdrs
    r = json.loads(rb)
    assert r["model_name"] == "add" and r["model_version"] == "1" and r["id"] == "abc"
    outs = {o["name"]: o for o in r["outputs"]}
    assert outs["OUTPUT0"]["shape"] == [2, 16] and outs["OUTPUT0"]["datatype"] == "INT32"
    assert outs["OUTPUT0"]["data"] == (a + 1).reshape(-1).tolist()  # output data is flat
    assert outs["OUTPUT1"]["data"] == (a - 1).reshape(-1).tolist()


def test_binary_data_output_parameter(addr):
    a, body = _add_body(False, parameters={"binary_data_output": True})
    status, hdrs, rb = _infer_json(addr, "add", body)
    assert status == 200
    assert hdrs["content-type"] == "application/octet-stream"
    head, tail = _split_binary(hdrs, rb)
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [128, 128] and len(tail) == 256
    assert all("data" not in o for o in head["outputs"])
    np.testing.assert_array_equal(np.frombuffer(tail[:128], "<i4"), (a + 1).reshape(-1))
    np.testing.assert_array_equal(np.frombuffer(tail[128:], "<i4"), (a - 1).reshape(-1))


def test_per_output_binary_data(addr):
    # request default binary, but OUTPUT1 asks JSON; and vice versa
    a, body = _add_body(False, parameters={"binary_data_output": True},
                        outputs=[{"name": "OUTPUT0"},
                                 {"name": "OUTPUT1", "parameters": {"binary_data": False}}])
    status, hdrs, rb = _infer_json(addr, "add", body)
    assert status == 200
    head, tail = _split_binary(hdrs, rb)
    o0, o1 = head["outputs"]
    assert o0["name"] == "OUTPUT0" and o0["parameters"]["binary_data_size"] == 128
    assert o1["name"] == "OUTPUT1" and o1["data"] == (a - 1).reshape(-1).tolist()
    np.testing.assert_array_equal(np.frombuffer(tail, "<i4"), (a + 1).reshape(-1))
    a, body = _add_body(False, outputs=[{"name": "OUTPUT1", "parameters": {"binary_data": True}}])
    status, hdrs, rb = _infer_json(addr, "add", body)
    head, tail = _split_binary(hdrs, rb)
    assert [o["name"] for o in head["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(np.frombuffer(tail, "<i4"), (a - 1).reshape(-1))


def test_binary_request_raw(addr):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, np.int32)
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
         "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": b.reshape(-1).tolist()},
    ], "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    status, hdrs, rb = request(addr, "POST", "/v2/models/add/infer", header + a.tobytes(),
                               {"Inference-Header-Content-Length": str(len(header)),
                                "Content-Type": "application/octet-stream"})
    assert status == 200, rb
    head, tail = _split_binary(hdrs, rb)
    np.testing.assert_array_equal(np.frombuffer(tail, "<i4"), (a + b).reshape(-1))


def test_raw_request_header_length_zero(addr):
    x = np.array([1.5, -2, 3, 0.25], np.float32)
    status, hdrs, rb = request(addr, "POST", "/v2/models/single/infer", x.tobytes(),
                               {"Inference-Header-Content-Length": "0"})
    assert status == 200, rb
    assert hdrs["content-type"] == "application/octet-stream"
    head, tail = _split_binary(hdrs, rb)
    out = head["outputs"][0]
    assert out["name"] == "OUTPUT0" and out["shape"] == [1, 4] and out["datatype"] == "FP32"
    np.testing.assert_array_equal(np.frombuffer(tail, "<f4"), x * 2)
    # a model with two inputs cannot take a raw request
    status, _, rb = request(addr, "POST", "/v2/models/add/infer", b"\0" * 128,
                            {"Inference-Header-Content-Length": "0"})
    assert status == 400 and "one input" in error_of(rb)
    # wrong byte count for the one input
    status, _, rb = request(addr, "POST", "/v2/models/single/infer", b"\0" * 12,
                            {"Inference-Header-Content-Length": "0"})
    assert status == 400 and error_of(rb)
    assert_serves(addr)


# BYTES ------------------------------------------------------------------------------------

STRINGS = [b"hello", b"", "h\u00e9llo w\u00f6rld".encode(), b"\xff\xfe\x00raw", b"", b"x" * 300]


def test_bytes_binary_with_client(client):
    arr = np.array(STRINGS, dtype=object)
    inp = httpclient.InferInput("INPUT0", [len(STRINGS)], "BYTES")
    inp.set_data_from_numpy(arr, binary_data=True)
    res = client.infer("strings", [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0")])
    out = res.as_numpy("OUTPUT0")
    assert out.shape == (len(STRINGS),) and list(out) == STRINGS
    assert res.get_output("OUTPUT0")["datatype"] == "BYTES"


def test_bytes_json_with_client(client):
    texts = ["hello", "", "h\u00e9llo \u2603", "with \"quotes\" and \\ and \n"]
    inp = httpclient.InferInput("INPUT0", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=object), binary_data=False)
    res = client.infer("strings", [inp],
                       outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)])
    assert res.get_output("OUTPUT0")["data"] == texts
    assert [x.decode() if isinstance(x, bytes) else x for x in res.as_numpy("OUTPUT0")] == texts


def test_bytes_not_utf8_refused_as_json_output(client, addr):
    # Triton's test_unicode_bytes: non-UTF-8 bytes asked for as JSON fail (never altered)
    inp = httpclient.InferInput("INPUT0", [len(STRINGS)], "BYTES")
    inp.set_data_from_numpy(np.array(STRINGS, dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException, match="element 3 is not valid UTF-8"):
        client.infer("strings", [inp],
                     outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)])
    assert_serves(addr)


def test_bytes_json_nested_raw(addr):
    body = {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "BYTES",
                        "data": [["a", ""], ["\u00e9"]][0] + ["\u00e9"]}]}
    status, _, rb = _infer_json(addr, "strings", body)
    assert status == 200, rb
    assert json.loads(rb)["outputs"][0]["data"] == ["a", "", "\u00e9"]


def test_bytes_binary_raw_layout(addr):
    payload = b"".join(struct.pack("<I", len(s)) + s for s in STRINGS)
    header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [len(STRINGS)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, hdrs, rb = request(addr, "POST", "/v2/models/strings/infer", header + payload,
                               {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, rb
    head, tail = _split_binary(hdrs, rb)
    assert head["outputs"][0]["parameters"]["binary_data_size"] == len(payload)
    assert tail == payload  # same layout back: 4-byte LE length, then the bytes


def test_bytes_length_prefix_past_buffer(addr):
    payload = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1000) + b"abc"
    header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    status, _, rb = request(addr, "POST", "/v2/models/strings/infer", header + payload,
                            {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and error_of(rb)
    assert_serves(addr)


# FP16 -----------------------------------------------------------------------------------

def test_fp16_binary_ok_json_refused(client, addr):
    x = np.array([1.5, -2, 0.125], np.float16)
    inp = httpclient.InferInput("INPUT0", [3], "FP16")
    inp.set_data_from_numpy(x)
    res = client.infer("half", [inp])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), x * 2)
    # JSON output of FP16 is allowed as numbers
    res = client.infer("half", [inp],
                       outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)])
    assert res.get_output("OUTPUT0")["data"] == [3.0, -4.0, 0.25]
    body = {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP16", "data": [1, 2, 3]}]}
    status, _, rb = _infer_json(addr, "half", body)
    assert status == 400 and "FP16" in error_of(rb)
    assert_serves(addr)


# classification ---------------------------------------------------------------------------

def test_classification_with_labels(client):
    x = np.array([[0.1, 0.9, 0.3, 0.7, 0.5],
                  [5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    inp = httpclient.InferInput("INPUT0", [2, 5], "FP32")
    inp.set_data_from_numpy(x)
    for binary in (True, False):
        res = client.infer("cls", [inp], outputs=[
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=3)])
        out = res.get_output("OUTPUT0")
        assert out["datatype"] == "BYTES" and out["shape"] == [2, 3]
        got = [[s.decode() if isinstance(s, bytes) else s for s in row]
               for row in res.as_numpy("OUTPUT0")]
        rows = [[s.split(":") for s in row] for row in got]
        # top-N order, value:index:label
        assert [[int(p[1]) for p in row] for row in rows] == [[1, 3, 4], [0, 1, 2]]
        assert [[p[2] for p in row] for row in rows] == [["dog", "fish", "frog"],
                                                         ["cat", "dog", "bird"]]
        for row, xr in zip(rows, x, strict=True):
            for p in row:
                assert float(p[0]) == pytest.approx(float(xr[int(p[1])]), rel=1e-6)
    # an output without label file: value:index only; class_count larger than the output
    res = client.infer("cls", [inp], outputs=[
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False, class_count=9)])
    out = res.get_output("OUTPUT1")
    assert out["shape"] == [2, 5]
    assert out["data"][:5] == ["9:1", "7:3", "5:4", "3:2", "1:0"]
    assert out["data"][5] == "50:0"
    assert all(len(s.split(":")) == 2 for s in out["data"])
    assert len(LABELS) == 5


# compression ------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["gzip", "deflate"])
def test_compression_with_client(client, algo):
    a, b, ins = add_inputs(batch=2)
    res = client.infer("add", ins, request_compression_algorithm=algo,
                       response_compression_algorithm=algo)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    res = client.infer("add", add_inputs(batch=2, binary=False)[2],
                       request_compression_algorithm=algo,
                       outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("algo", ["gzip", "deflate"])
def test_compression_raw(addr, algo):
    a, body = _add_body(True)
    raw = json.dumps(body).encode()
    comp = gzip.compress(raw) if algo == "gzip" else zlib.compress(raw)
    status, hdrs, rb = request(addr, "POST", "/v2/models/add/infer", comp,
                               {"Content-Encoding": algo, "Accept-Encoding": algo})
    assert status == 200, rb
    assert hdrs["content-encoding"] == algo
    plain = gzip.decompress(rb) if algo == "gzip" else zlib.decompress(rb)
    outs = {o["name"]: o for o in json.loads(plain)["outputs"]}
    assert outs["OUTPUT0"]["data"] == (a + 1).reshape(-1).tolist()
    # binary response, compressed: the header length counts the uncompressed JSON
    body["parameters"] = {"binary_data_output": True}
    comp = gzip.compress(json.dumps(body).encode())
    status, hdrs, rb = request(addr, "POST", "/v2/models/add/infer", comp,
                               {"Content-Encoding": "gzip", "Accept-Encoding": algo})
    assert status == 200
    plain = gzip.decompress(rb) if algo == "gzip" else zlib.decompress(rb)
    head, tail = _split_binary(hdrs, plain)
    assert len(tail) == 256
    # other routes answer uncompressed whatever the client accepts, as Triton does
    # (tritonclient.http.aio reads them as they come while aiohttp asks for gzip)
    status, hdrs, rb = request(addr, "GET", "/v2/models/add", headers={"Accept-Encoding": algo})
    assert "content-encoding" not in hdrs and json.loads(rb)["name"] == "add"
    # so are inference errors (Triton's simple_http_aio_infer_client.py reads the error of
    # an unknown model as it comes)
    status, hdrs, rb = request(addr, "POST", "/v2/models/no_such_model/infer", raw,
                               {"Accept-Encoding": algo})
    assert status == 404 and "content-encoding" not in hdrs and error_of(rb)


def test_compressed_binary_request(addr):
    # Inference-Header-Content-Length counts the JSON inside the decompressed body
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
         "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32",
         "parameters": {"binary_data_size": 64}}]}).encode()
    body = gzip.compress(header + a.tobytes() + a.tobytes())
    status, hdrs, rb = request(addr, "POST", "/v2/models/add/infer", body,
                               {"Content-Encoding": "gzip",
                                "Inference-Header-Content-Length": str(len(header))})
    assert status == 200, rb
    outs = {o["name"]: o for o in json.loads(rb)["outputs"]}
    assert outs["OUTPUT0"]["data"] == (a * 2).reshape(-1).tolist()


def test_bad_compressed_bodies(addr):
    status, _, rb = request(addr, "POST", "/v2/models/add/infer", b"not gzip at all",
                            {"Content-Encoding": "gzip"})
    assert status == 400 and error_of(rb)
    status, _, rb = request(addr, "POST", "/v2/models/add/infer", b"x",
                            {"Content-Encoding": "br"})
    assert status in (400, 501) and error_of(rb)
    assert_serves(addr)


# parameters ---------------------------------------------------------------------------------

def test_parameters(client, addr):
    a, b, ins = add_inputs()
    res = client.infer("add", ins, parameters={"custom": "x", "n": 3, "flag": True}, priority=1,
                       timeout=10_000_000)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    _, body = _add_body(False, parameters={"triton_internal": 1})
    status, _, rb = _infer_json(addr, "add", body)
    assert status == 400 and "triton_" in error_of(rb)
    with pytest.raises(Exception, match="triton_"):
        client.infer("add", ins, parameters={"triton_enable_empty_final_response": True})
    assert_serves(addr)
