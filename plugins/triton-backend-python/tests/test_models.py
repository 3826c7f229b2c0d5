"""Triton's python examples, rewritten, served by the real server and called with tritonclient."""

from __future__ import annotations

import json
import os
import queue

import numpy as np
import pytest
import tritonclient.http as httpclient
from python_backend_helpers import build_repo, make_server
from tritonclient.utils import InferenceServerException

from live_server import serving_http
from triton_core import InferenceRequest, Tensor


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = build_repo(tmp_path_factory.mktemp("repo"),
                      ["add_sub", "kitchen", "repeat", "bls", "strings", "metrics", "hang", "simple"])
    server = make_server(repo, model_control_mode="explicit", load_model=["*"])
    server.start()
    try:
        with serving_http(server) as url:
            yield server, httpclient.InferenceServerClient(url), repo
    finally:
        server.stop()


def _inp(name, arr, dt):
    i = httpclient.InferInput(name, list(arr.shape), dt)
    i.set_data_from_numpy(arr)
    return i


def test_add_sub(served):
    _, client, _ = served
    a = np.random.rand(3, 16).astype(np.float32)
    b = np.random.rand(3, 16).astype(np.float32)
    r = client.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", b, "FP32")])
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
    # JSON (non-binary) too, and only one output asked for
    r = client.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", b, "FP32")],
                     outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)])
    np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
    assert r.as_numpy("OUTPUT0") is None
    assert client.is_model_ready("add_sub")


def test_large_tensors_grow_the_arenas(served):
    _, client, _ = served
    a = np.random.rand(8, 16).astype(np.float32)
    r = client.infer("add_sub", [_inp("INPUT0", a, "FP32"), _inp("INPUT1", a, "FP32")])
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + a)
    big = np.random.rand(600_000).astype(np.float32)  # 2.4 MB: past the 1 MiB arenas, zero-copy out
    r = client.infer("kitchen", [_inp("IN", big, "FP32")])
    np.testing.assert_allclose(r.as_numpy("OUT"), big * 2)
    r = client.infer("kitchen", [_inp("IN", big[:10], "FP32")])
    np.testing.assert_allclose(r.as_numpy("OUT"), big[:10] * 2)


def test_autocomplete_and_helpers(served):
    server, client, _ = served
    cfg = client.get_model_config("kitchen")
    assert [i["name"] for i in cfg["input"]] == ["IN", "TEXT"]
    assert cfg["backend"] == "python" and cfg["max_batch_size"] == 0
    x = np.array([1.0, 2.5], dtype=np.float32)
    text = np.array([b"hello", b"w"], dtype=np.object_)
    r = client.infer("kitchen", [_inp("IN", x, "FP32"), _inp("TEXT", text, "BYTES")],
                     request_id="rid-7", parameters={"p": 3, "q": "s"})
    np.testing.assert_allclose(r.as_numpy("OUT"), x * 2)
    info = json.loads(r.as_numpy("INFO")[0])
    assert info["args"] == sorted(["model_config", "model_instance_kind", "model_instance_name",
                                   "model_instance_device_id", "model_repository",
                                   "model_version", "model_name"])
    assert info["model_name"] == "kitchen" and info["model_version"] == "1"
    assert info["kind"] == "CPU" and info["in_dtype"] == 11 and info["in_shape"] == [2]
    assert info["is_cpu"] and info["name"] == "IN" and info["np_type"] == "float32"
    assert info["in_cfg"] == "TYPE_FP32" and info["out_cfg"] == "TYPE_FP32"
    assert info["decoupled"] is False and info["roundtrip"] == ["ab", "", "xyz"]
    assert info["text"] == ["hello", "w"] and info["request_id"] == "rid-7"
    assert info["parameters"] == {"p": 3, "q": "s"} and info["cancelled"] is False
    assert info["dlpack_same"] is True
    resp = server.infer(InferenceRequest("kitchen", inputs={"IN": Tensor.from_numpy("IN", x)}))
    assert resp.parameters == {"answered_by": "kitchen", "n": 1}


def test_bytes(served):
    _, client, _ = served
    a = np.array([[b"abc", b"", "ünï".encode()]], dtype=np.object_)
    r = client.infer("strings", [_inp("INPUT0", a, "BYTES")])
    assert r.as_numpy("OUTPUT0").tolist() == [[b"ABC", b"", "ünï".encode().upper()]]
    assert r.as_numpy("LENGTHS").tolist() == [[3, 0, len("ünï".encode())]]


def test_decoupled_repeat_through_infer_iter(served):
    server, _, _ = served
    req = InferenceRequest("repeat", inputs={
        "IN": Tensor.from_numpy("IN", np.array([4, 5, 6], dtype=np.int32))})
    got = list(server.infer_iter(req, timeout=10))
    assert [int(r.output("OUT").as_numpy()[0]) for r, _ in got if r is not None] == [4, 5, 6]
    assert [int(r.output("IDX").as_numpy()[0]) for r, _ in got if r is not None] == [0, 1, 2]
    assert got[-1][1] is True and all(not f for _, f in got[:-1])


def test_decoupled_cancellation(served):
    server, _, _ = served
    req = InferenceRequest("repeat", inputs={
        "IN": Tensor.from_numpy("IN", np.arange(50, dtype=np.int32)),
        "DELAY": Tensor.from_numpy("DELAY", np.array([20], dtype=np.uint32))})
    q: queue.Queue = queue.Queue()
    it = server.infer_iter(req, timeout=10)
    first = next(it)
    assert first[0].error is None
    req.cancelled = True
    rest = list(it)
    assert len(rest) < 49
    last = rest[-1][0]
    assert rest[-1][1] and last is not None and last.error is not None
    assert "cancelled" in last.error.message
    del q


def test_decoupled_refused_over_plain_http(served):
    _, client, _ = served
    with pytest.raises(InferenceServerException):
        client.infer("repeat", [_inp("IN", np.array([1], dtype=np.int32), "INT32")])


def _bls(client, mode):
    r = client.infer("bls", [_inp("MODE", np.array([mode.encode()], dtype=np.object_), "BYTES")])
    return json.loads(r.as_numpy("OUT")[0])


def test_bls_into_onnx(served):
    _, client, _ = served
    out = _bls(client, "onnx")
    a = np.arange(16).reshape(1, 16)
    assert out["OUTPUT0"] == (a + 1).tolist() and out["OUTPUT1"] == (a - 1).tolist()
    assert list(_bls(client, "onnx_one_output")) == ["OUTPUT1"]


def test_bls_decoupled_async_and_errors(served):
    _, client, _ = served
    assert _bls(client, "decoupled") == [5, 6, 7, "final"]
    assert _bls(client, "async") == [2.0, 4.0]
    missing = _bls(client, "missing")
    assert "no_such_model" in missing["error"] and missing["code"] == 2  # NOT_FOUND
    timed = _bls(client, "timeout")
    assert "timed out" in timed["error"] and "300000 us" in timed["error"]


def test_bls_model_control(served):
    _, client, _ = served
    out = _bls(client, "control")
    assert out["before"] is True and out["unloaded"] is False and out["reloaded"] is True
    assert "no_such_model" in out["load_error"]
    assert client.is_model_ready("strings")


def test_metrics_collector(served):
    from prometheus_client import CollectorRegistry, generate_latest

    import triton_backend_python.plugin as plugin

    _, client, _ = served
    for x in (0.5, 5.0, 50.0):
        r = client.infer("metrics", [_inp("X", np.array([x], dtype=np.float32), "FP32")])
    assert r.as_numpy("Y").tolist() == [3.0]
    registry = CollectorRegistry(auto_describe=False)
    plugin.triton_metric_families(registry=registry)
    text = generate_latest(registry).decode()
    # Sample names as Triton writes them (prometheus_client adds _total to a counter's TYPE line).
    assert "counter" in text and 'custom_requests{model="metrics"} 3.0' in text
    assert "# TYPE custom_x histogram" in text and "# TYPE custom_last_value gauge" in text
    assert 'custom_last_value{k="v"} 50.0' in text
    assert 'custom_x_bucket{le="1.0"} 1.0' in text and 'custom_x_bucket{le="10.0"} 2.0' in text
    assert 'custom_x_bucket{le="+Inf"} 3.0' in text and "custom_x_sum 55.5" in text


def test_no_cffi_in_workers(served):
    server, _, _ = served
    inst = server.manager.get("add_sub").instances[0]
    pid = inst.worker.pid
    maps = open(f"/proc/{pid}/maps").read() if os.path.exists(f"/proc/{pid}/maps") else ""
    assert "_cffi_backend" not in maps and "_triton_native" not in maps


def test_bls_request_traced_as_a_child_of_its_caller(served, tmp_path):
    """request.trace() passed to a BLS request: its trace names the caller's as parent."""
    from triton_core.testing import wait_until

    _, client, _ = served
    trace_file = tmp_path / "bls.json"
    client.update_trace_settings(model_name="bls", settings={
        "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "1",
        "trace_file": str(trace_file)})
    try:
        assert _bls(client, "traced") == {"OUTPUT0": [[i + 1 for i in range(16)]]}
        written = tmp_path / "bls.json.0"  # count used up: written with its children
        wait_until(written.exists, "the trace file written", 10)
    finally:
        client.update_trace_settings(model_name="bls", settings={
            "trace_level": None, "trace_rate": None, "trace_count": None, "trace_file": None})
    heads = [r for r in json.loads(written.read_text()) if "model_name" in r]
    parent = next(h for h in heads if h["model_name"] == "bls")
    child = next(h for h in heads if h["model_name"] == "simple")
    assert child["parent_id"] == parent["id"] and child["model_version"] == 1
