"""Python models over gRPC: ModelInfer, decoupled models over ModelStreamInfer, and the real
`tritonserver` command serving a python model (HTTP and gRPC)."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from python_backend_helpers import build_repo, make_server
from tritonclient.utils import InferenceServerException

from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.testing import LoopThread, wait_until


@pytest.fixture(scope="module")
def grpc_served(tmp_path_factory):
    repo = build_repo(tmp_path_factory.mktemp("repo"), ["add_sub", "repeat", "bls", "simple"])
    server = make_server(repo, model_control_mode="explicit", load_model=["*"])
    server.start()
    loop = LoopThread()
    front = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(front.start())
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
    try:
        yield server, client
    finally:
        client.close()
        loop.run(front.stop(0))
        loop.close()
        server.stop()


def _inp(name, arr, dt):
    i = grpcclient.InferInput(name, list(arr.shape), dt)
    i.set_data_from_numpy(arr)
    return i


def _stream(client, model, inputs, n_requests=1, timeout=20.0, **kw):
    """Runs ``n_requests`` on one stream; returns {request_id: [(result, error), ...]} once
    each request's FINAL-marked response arrived (or after ``timeout`` for those without)."""
    q: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: q.put((result, error)))
    try:
        for k in range(n_requests):
            client.async_stream_infer(model, inputs, request_id=f"r{k}", **kw)
        got: dict[str, list] = {f"r{k}": [] for k in range(n_requests)}
        done: set[str] = set()
        while len(done) < n_requests:
            try:
                result, error = q.get(timeout=timeout)
            except queue.Empty:
                break
            if error is not None:
                rid = next(iter(set(got) - done))  # stream errors carry no id here: one request
                got[rid].append((None, error))
                done.add(rid)
                continue
            resp = result.get_response()
            got[resp.id].append((result, None))
            final = resp.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                done.add(resp.id)
        return got
    finally:
        client.stop_stream()


def _final_flag(result) -> bool:
    return result.get_response().parameters["triton_final_response"].bool_param


def test_add_sub_over_grpc(grpc_served):
    _, client = grpc_served
    a = np.random.rand(2, 16).astype(np.float32)
    b = np.random.rand(2, 16).astype(np.float32)
    r = client.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", b, "FP32")])
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
    r = client.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", b, "FP32")],
                     outputs=[grpcclient.InferRequestedOutput("OUTPUT1")], request_id="x1")
    np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
    assert r.as_numpy("OUTPUT0") is None and r.get_response().id == "x1"
    assert client.is_model_ready("add_sub")
    meta = client.get_model_metadata("add_sub", as_json=True)
    assert meta["platform"] == "python" and [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"]


def test_add_sub_over_grpc_stream(grpc_served):
    """A model that is not decoupled answers once on the stream, marked final."""
    _, client = grpc_served
    a = np.ones((1, 16), np.float32)
    got = _stream(client, "add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", a, "FP32")],
                  n_requests=3)
    for rid, items in got.items():
        assert len(items) == 1, rid
        result, error = items[0]
        assert error is None and _final_flag(result)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a * 2)


def test_bls_over_grpc(grpc_served):
    _, client = grpc_served

    def bls(mode):
        r = client.infer("bls", [_inp("MODE", np.array([mode.encode()], dtype=np.object_),
                                      "BYTES")])
        return json.loads(r.as_numpy("OUT")[0])

    out = bls("onnx")
    a = np.arange(16).reshape(1, 16)
    assert out["OUTPUT0"] == (a + 1).tolist() and out["OUTPUT1"] == (a - 1).tolist()
    assert bls("decoupled") == [5, 6, 7, "final"]
    assert bls("async") == [2.0, 4.0]
    missing = bls("missing")
    assert "no_such_model" in missing["error"] and missing["code"] == 2


def test_decoupled_repeat_over_stream(grpc_served):
    _, client = grpc_served
    values = np.array([4, 5, 6], dtype=np.int32)
    got = _stream(client, "repeat", [_inp("IN", values, "INT32")], n_requests=2,
                  enable_empty_final_response=True)
    for rid, items in got.items():
        assert [e for _, e in items] == [None] * 4, rid
        data = [r for r, _ in items[:-1]]
        assert [int(r.as_numpy("OUT")[0]) for r in data] == [4, 5, 6]
        assert [int(r.as_numpy("IDX")[0]) for r in data] == [0, 1, 2]
        assert [_final_flag(r) for r in data] == [False, False, False]
        last = items[-1][0].get_response()
        # the model's bare FINAL flag: an empty response marked final, with the request's id
        assert last.id == rid and len(last.outputs) == 0 and _final_flag(items[-1][0])


def test_decoupled_repeat_without_empty_final(grpc_served):
    _, client = grpc_served
    got = _stream(client, "repeat", [_inp("IN", np.array([1, 2], dtype=np.int32), "INT32")],
                  timeout=2.0)
    items = got["r0"]
    # without triton_enable_empty_final_response the bare FINAL sends nothing
    assert [int(r.as_numpy("OUT")[0]) for r, _ in items] == [1, 2]
    assert not any(_final_flag(r) for r, _ in items)


def test_decoupled_many_responses_and_zero(grpc_served):
    _, client = grpc_served
    values = np.arange(100, dtype=np.int32)
    got = _stream(client, "repeat", [_inp("IN", values, "INT32")],
                  enable_empty_final_response=True)
    items = got["r0"]
    assert [int(r.as_numpy("OUT")[0]) for r, _ in items[:-1]] == values.tolist()
    empty = _stream(client, "repeat", [_inp("IN", np.zeros(0, dtype=np.int32), "INT32")],
                    enable_empty_final_response=True)["r0"]
    assert len(empty) == 1 and _final_flag(empty[0][0])
    assert len(empty[0][0].get_response().outputs) == 0


def test_decoupled_refused_over_unary_grpc(grpc_served):
    _, client = grpc_served
    with pytest.raises(InferenceServerException):
        client.infer("repeat", [_inp("IN", np.array([1], dtype=np.int32), "INT32")])


# --- the real `tritonserver` command -------------------------------------------------------



@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    from e2e_server import start_server, stop_server

    repo = build_repo(tmp_path_factory.mktemp("e2e_repo"), ["add_sub", "repeat"])
    r = start_server(tmp_path_factory.mktemp("e2e"), "--model-repository", str(repo))
    try:
        http = httpclient.InferenceServerClient(r.http_url)
        wait_until(lambda: http.is_model_ready("add_sub") and http.is_model_ready("repeat"),
                   f"the models ready (server log: {r.log})", 60)
        yield r
    finally:
        assert stop_server(r) == 0, r.log.read_text()
    assert "Traceback" not in Path(r.log).read_text()


def test_tritonserver_serves_python_models(real_server):
    a = np.random.rand(1, 16).astype(np.float32)
    b = np.random.rand(1, 16).astype(np.float32)
    h = httpclient.InferenceServerClient(real_server.http_url)
    hin = [httpclient.InferInput("INPUT0", [1, 16], "FP32"),
           httpclient.InferInput("INPUT1", [1, 16], "FP32")]
    hin[0].set_data_from_numpy(a)
    hin[1].set_data_from_numpy(b)
    r = h.infer("add_sub", hin)
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + b)

    g = grpcclient.InferenceServerClient(real_server.grpc_url)
    try:
        r = g.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", b, "FP32")])
        np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
        got = _stream(g, "repeat", [_inp("IN", np.array([7, 8], dtype=np.int32), "INT32")],
                      enable_empty_final_response=True)["r0"]
        assert [int(x.as_numpy("OUT")[0]) for x, _ in got[:-1]] == [7, 8]
        assert _final_flag(got[-1][0]) and len(got[-1][0].get_response().outputs) == 0
        # the worker processes are the server's children, not this process's
        assert g.is_server_ready()
    finally:
        g.close()
