"""Bounded fuzzing of what a client controls: the HTTP/1.1 parser, the binary-tensor
extension, and the gRPC request decoder with the checks behind it.

Every input must end in a response the protocol allows for a client's mistake (HTTP 4xx,
TritonError), never a 500, an unhandled exception or a dead server. Examples are
derandomized, so CI runs the same ones every time; TRITON_FUZZ_EXAMPLES raises their number
and TRITON_FUZZ_RANDOM=1 draws new ones (scripts/fuzz.sh runs a long random round).
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from http_helpers import assert_serves, request
from triton_core.errors import TritonError
from triton_core.frontends.grpc import codec, wire

EXAMPLES = int(os.environ.get("TRITON_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize=os.environ.get("TRITON_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

DATATYPES = ["INT32", "FP32", "BYTES", "BOOL", "INT8", "UINT64", "FP16", "BF16", "int32", ""]
NAMES = ["INPUT0", "INPUT1", "IN", "", "OUTPUT0"]
MODELS = ["add", "strings", "half", "nosuch"]


def _status_of(raw: bytes) -> int | None:
    """The status of the first response in raw bytes, None when there is none."""
    if not raw:
        return None
    assert raw.startswith(b"HTTP/1.1 "), raw[:80]
    return int(raw[9:12])


def _exchange(addr: str, data: bytes) -> bytes:
    """Send data, half-close, and read until the server closes (or 10 s pass)."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused early and closed: what it sent is the answer
            pass
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return bytes(out)


_valid = (b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: 2\r\n\r\n{}")
_tokens = st.sampled_from([
    b"GET ", b"POST ", b"/v2", b"/v2/models/add", b"/infer", b" HTTP/1.1\r\n", b"\r\n", b": ",
    b"Content-Length", b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"ffffffff\r\n",
    b"Inference-Header-Content-Length", b"Content-Encoding: gzip\r\n", b"-1", b"99999999999999",
    b"{", b"}", b"\x00", b"\xff", b"%", b"%zz", b"?a=b", b" ", b"\n", b"Host: x\r\n",
])
_http_bytes = st.one_of(
    st.binary(max_size=512),
    st.lists(_tokens, max_size=24).map(b"".join),
    st.tuples(st.integers(0, len(_valid)), st.binary(max_size=64)).map(
        lambda t: _valid[:t[0]] + t[1] + _valid[t[0]:]),
)


@FUZZ
@given(data=_http_bytes)
def test_the_http_parser_answers_any_bytes_without_a_server_error(addr, data):
    for status in _statuses(_exchange(addr, data)):
        assert status < 500 or status in (501, 503, 505), (data, status)


def _statuses(raw: bytes) -> list[int]:
    """Status codes of every response in raw (pipelined requests may get several)."""
    out = []
    i = raw.find(b"HTTP/1.1 ")
    while i >= 0:
        out.append(int(raw[i + 9:i + 12]))
        i = raw.find(b"HTTP/1.1 ", i + 1)
    assert not raw or raw.startswith(b"HTTP/1.1 "), raw[:80]
    return out


_shapes = st.lists(st.one_of(st.integers(-2, 20), st.sampled_from([2**31, 2**62, 2**63 - 1])),
                   max_size=4)
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda children: st.lists(children, max_size=6), max_leaves=40)
_inputs = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES), "datatype": st.sampled_from(DATATYPES), "shape": _shapes},
    optional={
        "data": _json_values,
        "parameters": st.fixed_dictionaries({}, optional={
            "binary_data_size": st.one_of(st.integers(-4, 4096), st.text(max_size=3)),
            "shared_memory_region": st.text(max_size=8)}),
    })
_headers = st.fixed_dictionaries(
    {"inputs": st.lists(_inputs, max_size=3)},
    optional={
        "outputs": st.lists(st.fixed_dictionaries(
            {"name": st.sampled_from(NAMES + ["OUTPUT1"])},
            optional={"parameters": st.dictionaries(
                st.sampled_from(["binary_data", "classification"]), _json_values, max_size=2)}),
            max_size=3),
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_output", "priority", "timeout", "sequence_id"]),
            _json_values, max_size=3),
        "id": _json_values,
    })


@FUZZ
@given(model=st.sampled_from(MODELS), header=_headers, binary=st.binary(max_size=256),
       header_length_delta=st.sampled_from([0, 0, 0, -1, 1, None]))
def test_binary_tensor_requests_get_a_client_error_or_a_result(addr, model, header, binary,
                                                               header_length_delta):
    head = json.dumps(header).encode()
    headers = {"Content-Type": "application/octet-stream"}
    if header_length_delta is not None:
        headers["Inference-Header-Content-Length"] = str(max(0, len(head) + header_length_delta))
    status, _, body = request(addr, "POST", f"/v2/models/{model}/infer", head + binary, headers)
    assert status in (200, 400, 404), (header, binary, status, body[:300])
    if status != 200:
        assert json.loads(body)["error"]


_nested = st.tuples(st.sampled_from([10, 1000, 100_000]), st.sampled_from(["[]", "{}"]),
                    st.booleans()).map(
    lambda t: (t[1][0] if t[1] == "[]" else '{"a":') * t[0] + "1"[:t[2]]
    + ("]" if t[1] == "[]" else "}") * t[0])
_json_bodies = st.one_of(_nested, _headers.map(json.dumps), _json_values.map(json.dumps),
                         st.text(max_size=64))


@FUZZ
@given(model=st.sampled_from(MODELS), body=_json_bodies)
def test_any_json_body_gets_a_client_error_or_a_result(addr, model, body):
    status, _, out = request(addr, "POST", f"/v2/models/{model}/infer", body,
                             {"Content-Type": "application/json"})
    assert status in (200, 400, 404), (body[:200], status, out[:300])


def test_the_server_still_serves_after_fuzzing(addr):
    assert_serves(addr)


def _tensor_messages():
    contents = st.fixed_dictionaries({}, optional={
        "int_contents": st.lists(st.integers(-2**31, 2**31 - 1), max_size=40),
        "fp32_contents": st.lists(st.floats(width=32), max_size=40),
        "bytes_contents": st.lists(st.binary(max_size=8), max_size=8),
        "bool_contents": st.lists(st.booleans(), max_size=8),
    })
    return st.fixed_dictionaries({
        "name": st.sampled_from(NAMES), "datatype": st.sampled_from(DATATYPES),
        "shape": st.lists(st.integers(-2, 40), max_size=3), "contents": contents,
    })


@FUZZ
@given(model=st.sampled_from(MODELS), tensors=st.lists(_tensor_messages(), max_size=3),
       raw=st.lists(st.binary(max_size=160), max_size=4),
       outputs=st.lists(st.sampled_from(NAMES + ["OUTPUT1"]), max_size=3),
       version=st.sampled_from(["", "1", "-1", "x", "99999999999999999999"]))
def test_grpc_requests_decode_to_a_request_or_a_triton_error(http_server, model, tensors, raw,
                                                             outputs, version):
    msg = pb.ModelInferRequest(model_name=model, model_version=version)
    for t in tensors:
        inp = msg.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for field, values in t["contents"].items():
            getattr(inp.contents, field).extend(values)
    msg.raw_input_contents.extend(raw)
    for o in outputs:
        msg.outputs.add(name=o)
    try:
        req = codec.decode_request(msg)
        resp = http_server.infer(req, timeout=30)
    except TritonError:
        return
    assert resp.error is None
    for out in resp.outputs:  # a result must be a well-formed tensor
        assert isinstance(out.as_numpy(), np.ndarray)


_frame = st.tuples(st.booleans(), st.binary(max_size=300)).map(
    lambda t: wire.frame(t[1]) if not t[0] else bytes([t[0]]) + len(t[1]).to_bytes(4, "big") + t[1])


@FUZZ
@given(frames=st.lists(st.one_of(_frame, st.binary(max_size=12)), max_size=6),
       cuts=st.lists(st.integers(0, 2000), max_size=8),
       encoding=st.sampled_from([b"identity", b"gzip", b"deflate", b"snappy"]))
def test_grpc_message_reader_splits_any_chunking_or_raises_a_wire_error(frames, cuts, encoding):
    data = b"".join(frames)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    reader = wire.MessageReader(encoding, 1 << 20)
    got: list[bytes] = []
    try:
        for a, b in zip(bounds, bounds[1:], strict=False):
            got += reader.feed(data[a:b])
    except wire.WireError:
        return
    assert sum(len(m) for m in got) <= len(data)


@pytest.mark.parametrize("size", [0, 1, 16 * 1024 + 3])
def test_grpc_message_reader_reassembles_chunked_messages(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = wire.frame(payload) * 2
    reader = wire.MessageReader(b"identity", 1 << 20)
    got: list[bytes] = []
    for i in range(0, len(data), 1000):
        got += reader.feed(data[i:i + 1000])
    assert [bytes(m) for m in got] == [payload, payload]
