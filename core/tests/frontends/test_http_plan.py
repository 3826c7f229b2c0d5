"""Reused request headers (http_plan) and all-binary response headers: the same answers as a
full parse, the same errors, and never for requests whose header carries per-request meaning."""

from __future__ import annotations

import json

import numpy as np
import pytest

import triton_core.frontends.http.app as http_mod
from http_helpers import error_of, request
from triton_core.frontends.http.infer import _HEADERS, build_response, parse_request
from triton_core.frontends.http.plan import MAX_PLANS, RequestPlans, plan_of
from triton_core.request import InferenceResponse
from triton_core.tensor import Tensor


def _body(a, b, header_extra=None, outputs=True):
    header = {"inputs": [
        {"name": "INPUT0", "shape": list(a.shape), "datatype": "INT32",
         "parameters": {"binary_data_size": a.nbytes}},
        {"name": "INPUT1", "shape": list(b.shape), "datatype": "INT32",
         "parameters": {"binary_data_size": b.nbytes}}]}
    if outputs:
        header["outputs"] = [{"name": "OUTPUT0", "parameters": {"binary_data": True}},
                             {"name": "OUTPUT1", "parameters": {"binary_data": True}}]
    header.update(header_extra or {})
    h = json.dumps(header).encode()
    return h + a.tobytes() + b.tobytes(), {"Inference-Header-Content-Length": str(len(h))}


def _outputs(hdrs, body):
    n = int(hdrs["inference-header-content-length"])
    head = json.loads(body[:n])
    out, off = {}, n
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(body[off:off + size], np.int32).reshape(o["shape"])
        off += size
    return head, out


@pytest.fixture
def parses(monkeypatch):
    calls = []
    real = http_mod.parse_request

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(http_mod, "parse_request", counting)
    return calls


def test_a_repeated_header_is_parsed_once_and_answers_right(addr, parses):
    rng = np.random.default_rng(0)
    heads = []
    for _ in range(5):
        a = rng.integers(-100, 100, (2, 16), dtype=np.int32)
        b = rng.integers(-100, 100, (2, 16), dtype=np.int32)
        body, hdrs = _body(a, b, {"id": "same-id"})
        status, rh, rb = request(addr, "POST", "/v2/models/add/infer", body, hdrs)
        assert status == 200, rb
        head, out = _outputs(rh, rb)
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        heads.append(head)
    assert parses.count("add") == 1
    assert all(h == heads[0] for h in heads)
    assert heads[0]["id"] == "same-id" and heads[0]["model_name"] == "add"


def test_a_reused_header_with_other_data_sizes_gets_the_full_parse_error(addr, parses):
    a = np.zeros((1, 16), np.int32)
    body, hdrs = _body(a, a, {"id": "size-check"})
    assert request(addr, "POST", "/v2/models/add/infer", body, hdrs)[0] == 200
    status, _, rb = request(addr, "POST", "/v2/models/add/infer", body[:-4], hdrs)
    assert status == 400
    assert "runs past" in error_of(rb)
    assert request(addr, "POST", "/v2/models/add/infer", body + b"xxxx", hdrs)[0] == 400
    assert request(addr, "POST", "/v2/models/add/infer", body, hdrs)[0] == 200


def test_a_header_with_sequence_parameters_is_parsed_each_time(addr, parses):
    a = np.zeros((1, 16), np.int32)
    body, hdrs = _body(a, a, {"parameters": {"priority": 1}})
    for _ in range(3):
        assert request(addr, "POST", "/v2/models/add/infer", body, hdrs)[0] == 200
    assert parses.count("add") == 3


def test_plans_only_for_plain_binary_requests():
    a = np.zeros((1, 16), np.int32)
    binary = memoryview(a.tobytes() * 2)
    plain, _ = _body(a, a)
    n = len(plain) - 128
    header = json.loads(plain[:n])
    req, bd = parse_request("add", None, header, binary)
    plan = plan_of(header, req, bd)
    assert plan is not None
    again = plan.build("add", None, binary)
    assert again is not None and again is not req
    assert list(again.inputs) == ["INPUT0", "INPUT1"]
    assert again.inputs["INPUT0"].shape == (1, 16)
    assert [o.name for o in again.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert again.outputs is not plan.outputs  # a request may not change the plan's list
    assert plan.build("add", None, binary[:-1]) is None

    classified = dict(header, outputs=[{"name": "OUTPUT0", "parameters": {"classification": 2}}])
    req, bd = parse_request("add", None, classified, binary)
    assert plan_of(classified, req, bd) is None
    json_data = {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
                             "data": [0] * 16}]}
    req, bd = parse_request("add", None, json_data, memoryview(b""))
    assert plan_of(json_data, req, bd) is None
    seq = dict(header, parameters={"sequence_id": 7, "sequence_start": True})
    req, bd = parse_request("add", None, seq, binary)
    assert plan_of(seq, req, bd) is None


def test_plans_are_bounded():
    plans = RequestPlans()
    a = np.zeros((1, 16), np.int32)
    plain, _ = _body(a, a)
    header = json.loads(plain[:len(plain) - 128])
    req, bd = parse_request("add", None, header, memoryview(a.tobytes() * 2))
    plan = plan_of(header, req, bd)
    for i in range(MAX_PLANS + 10):
        plans.put(("m", None, str(i).encode()), plan)
    assert len(plans._plans) == MAX_PLANS
    assert plans.get(("m", None, b"0")) is None
    assert plans.get(("m", None, str(MAX_PLANS + 9).encode())) is plan


def test_binary_response_header_equals_the_general_one():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array([b"x", b"yz"], dtype=np.object_)
    resp = InferenceResponse(model_name="m", model_version=3, id="r1",
                             outputs=[Tensor.from_numpy("A", a), Tensor.from_numpy("S", s)])
    header = {"inputs": [], "parameters": {"binary_data_output": True}}
    req, bd = parse_request("m", None, header, memoryview(b""))
    _HEADERS.clear()
    fast, chunks = build_response(resp, req, bd)
    assert len(_HEADERS) == 1
    # the general path (a JSON output asked for makes it take that path)
    req2, bd2 = parse_request("m", None, {"inputs": [], "outputs": [
        {"name": "A", "parameters": {"binary_data": True}},
        {"name": "S", "parameters": {"binary_data": True, "classification": 0}}]}, memoryview(b""))
    slow, chunks2 = build_response(resp, req2, bd2, classify=lambda t, n: t)
    assert json.loads(fast) == json.loads(slow)
    assert [bytes(c) for c in chunks] == [bytes(c) for c in chunks2]
    assert build_response(resp, req, bd)[0] is fast  # the second time from the cache
