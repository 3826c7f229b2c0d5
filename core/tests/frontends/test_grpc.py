"""End-to-end tests of the gRPC front end with tritonclient.grpc (sync, asyncio, streaming)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from testing_backend import FAIL_VALUE, LABELS, make_server
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from triton_core.frontends.grpc import GrpcFrontEnd, health
from triton_core.testing import LoopThread, wait_until


class Harness:
    def __init__(self, tmp_path, **grpc_kwargs) -> None:
        self.server = make_server(tmp_path)
        self.loop = LoopThread()
        self.frontend = GrpcFrontEnd(self.server, "127.0.0.1", 0, **grpc_kwargs)
        self.loop.run(self.frontend.start())
        self.url = f"127.0.0.1:{self.frontend.port}"

    def client(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(self.url)

    def close(self) -> None:
        self.loop.run(self.frontend.stop(0))
        self.loop.close()
        self.server.stop()


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def h(tmp_path_factory, request):
    """Both gRPC engines pass every test that uses this fixture."""
    harness = Harness(tmp_path_factory.mktemp("grpc"), engine=request.param)
    yield harness
    harness.close()


@pytest.fixture
def client(h):
    c = h.client()
    yield c
    c.close()


def simple_inputs(a=None, b=None, batch=1, typed=False):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16) if a is None else a
    b = np.ones((batch, 16), dtype=np.int32) if b is None else b
    i0 = grpcclient.InferInput("INPUT0", list(a.shape), "INT32")
    i1 = grpcclient.InferInput("INPUT1", list(b.shape), "INT32")
    i0.set_data_from_numpy(a)
    i1.set_data_from_numpy(b)
    return [i0, i1], a, b


def raw_request(a, b, model="simple"):
    req = pb.ModelInferRequest(model_name=model)
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        req.inputs.add(name=name, datatype="INT32", shape=arr.shape)
        req.raw_input_contents.append(arr.tobytes())
    return req


def stub(h):
    ch = grpc.insecure_channel(h.url)
    return ch, pb_grpc.GRPCInferenceServiceStub(ch)


# --- health and metadata ----------------------------------------------------------------


def test_live_ready_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "2")
    assert not client.is_model_ready("nope")
    md = client.get_server_metadata()
    assert md.name == "triton"
    assert "classification" in md.extensions and "statistics" in md.extensions
    mm = client.get_model_metadata("simple", as_json=True)
    assert mm["name"] == "simple" and mm["versions"] == ["1"] and mm["platform"] == "testadd"
    assert mm["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]}
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_model_config(client):
    cfg = client.get_model_config("simple").config
    assert cfg.name == "simple" and cfg.max_batch_size == 8 and cfg.backend == "testadd"
    assert [i.name for i in cfg.input] == ["INPUT0", "INPUT1"]
    assert cfg.input[0].data_type == 8  # TYPE_INT32
    assert list(cfg.input[0].dims) == [16]
    assert cfg.instance_group[0].kind == 2  # KIND_CPU
    cfg = client.get_model_config("classifier", as_json=True)["config"]
    assert cfg["output"][0]["label_filename"] == "labels.txt"
    with pytest.raises(InferenceServerException) as e:
        client.get_model_config("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_health_check(h):
    ch = grpc.insecure_channel(h.url)
    check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=health.encode_request,
                           response_deserializer=health.decode_response)
    assert check("") == health.SERVING
    assert check("inference.GRPCInferenceService") == health.SERVING
    ch.close()


# --- inference --------------------------------------------------------------------------


def test_infer_simple(client):
    inputs, a, b = simple_inputs(batch=3)
    res = client.infer("simple", inputs, request_id="42")
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    r = res.get_response()
    assert r.id == "42" and r.model_name == "simple" and r.model_version == "1"
    assert list(r.outputs[0].shape) == [3, 16] and r.outputs[0].datatype == "INT32"
    assert len(r.raw_output_contents) == 2


def test_infer_requested_outputs_and_version(client):
    inputs, a, b = simple_inputs()
    res = client.infer("simple", inputs, model_version="1",
                       outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert res.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)


def test_infer_typed_contents(h):
    ch, s = stub(h)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    req = pb.ModelInferRequest(model_name="simple", id="t")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend(a.reshape(-1).tolist())
    resp = s.ModelInfer(req)
    out0 = np.frombuffer(resp.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(out0, (a + a).reshape(-1))
    assert resp.outputs[1].name == "OUTPUT1"
    ch.close()


def test_infer_bytes(client):
    data = np.array([[b"hello", b"", "wörld".encode(), b"\x00\x01"]], dtype=object)
    inp = grpcclient.InferInput("INPUT0", [1, 4], "BYTES")
    inp.set_data_from_numpy(data)
    res = client.infer("simple_string", [inp])
    assert res.as_numpy("OUTPUT0").tolist() == data.tolist()
    assert res.get_response().outputs[0].datatype == "BYTES"


def test_infer_bytes_typed_contents(h):
    ch, s = stub(h)
    req = pb.ModelInferRequest(model_name="simple_string")
    t = req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
    t.contents.bytes_contents.extend([b"a", b"bc"])
    resp = s.ModelInfer(req)
    assert resp.raw_output_contents[0] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"
    ch.close()


def test_infer_parameters(client):
    inputs, a, b = simple_inputs()
    res = client.infer("simple", inputs, parameters={"custom": "x", "n": 3, "f": 0.5, "flag": True},
                       priority=0, timeout=60_000_000)  # 60 s: never reached
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)


def test_infer_reserved_parameter(h):
    ch, s = stub(h)
    a = np.zeros((1, 16), dtype=np.int32)
    req = raw_request(a, a)
    req.parameters["triton_x"].int64_param = 1
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "triton_" in e.value.details()
    # sequence / priority parameters are taken by the front end, not passed as user parameters
    req = raw_request(a, a)
    req.parameters["sequence_id"].uint64_param = 2**63 + 1
    req.parameters["sequence_start"].bool_param = True
    req.parameters["priority"].int64_param = 1
    assert s.ModelInfer(req).model_name == "simple"
    ch.close()


def test_classification(client):
    x = np.array([[0.1, 0.7, 0.05, 0.15], [0.9, 0.0, 0.3, 0.2]], dtype=np.float32)
    inp = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer("classifier", [inp],
                       outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)])
    out = res.as_numpy("OUTPUT0")
    assert out.shape == (2, 2)
    assert out[0].tolist() == [b"0.700000:1:" + LABELS[1].encode(), b"0.150000:3:" + LABELS[3].encode()]
    assert out[1].tolist() == [b"0.900000:0:cat", b"0.300000:2:bird"]
    assert res.get_response().outputs[0].datatype == "BYTES"


def test_infer_async_client_and_callback(client):
    inputs, a, b = simple_inputs()
    done: queue.Queue = queue.Queue()
    client.async_infer("simple", inputs, lambda result, error: done.put((result, error)))
    result, error = done.get(timeout=10)
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_aio_client(h):
    async def main():
        async with aioclient.InferenceServerClient(h.url) as c:
            assert await c.is_server_live()
            assert await c.is_model_ready("simple")
            inputs = []
            outs = []
            for i in range(20):
                ins, a, b = simple_inputs(a=np.full((1, 16), i, dtype=np.int32))
                inputs.append(ins)
                outs.append(a + b)
            results = await asyncio.gather(*(c.infer("simple", ins) for ins in inputs))
            for r, want in zip(results, outs, strict=True):
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), want)
            with pytest.raises(InferenceServerException):
                await c.infer("nope", inputs[0])
            stats = await c.get_inference_statistics("simple", as_json=True)
            assert stats["model_stats"][0]["name"] == "simple"
    asyncio.run(main())


# --- bad input: each error leaves the server serving ---------------------------------------


def _still_serving(client):
    inputs, a, b = simple_inputs()
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a + b)


def test_unknown_model(client):
    inputs, _, _ = simple_inputs()
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", inputs)
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in e.value.message()
    _still_serving(client)


def test_wrong_shape(client):
    a = np.zeros((1, 15), dtype=np.int32)
    inputs, _, _ = simple_inputs(a=a, b=a)
    with pytest.raises(InferenceServerException) as e:
        client.infer("simple", inputs)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unexpected shape" in e.value.message()
    _still_serving(client)


def test_wrong_datatype(h, client):
    ch, s = stub(h)
    a = np.zeros((1, 16), dtype=np.float32)
    req = raw_request(a, a)
    for t in req.inputs:
        t.datatype = "FP32"
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "data-type" in e.value.details()
    ch.close()
    _still_serving(client)


def test_wrong_raw_byte_length(h, client):
    ch, s = stub(h)
    a = np.zeros((1, 16), dtype=np.int32)
    req = raw_request(a, a)
    req.raw_input_contents[1] = b"\x00" * 63
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "INPUT1" in e.value.details()
    ch.close()
    _still_serving(client)


def test_raw_contents_count_mismatch(h, client):
    ch, s = stub(h)
    a = np.zeros((1, 16), dtype=np.int32)
    req = raw_request(a, a)
    del req.raw_input_contents[1]
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "unable to find data for input tensor 'INPUT1' for model 'simple' in request."
    ch.close()
    _still_serving(client)


def test_raw_and_typed_contents(h, client):
    ch, s = stub(h)
    a = np.zeros((1, 16), dtype=np.int32)
    req = raw_request(a, a)
    req.inputs[0].contents.int_contents.extend([0] * 16)
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == ("contents field must not be specified when using raw_input_contents "
                                 "for 'INPUT0' for model 'simple'")
    ch.close()
    _still_serving(client)


def test_typed_contents_wrong_count(h, client):
    ch, s = stub(h)
    req = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend([1] * 15)
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()
    _still_serving(client)


def test_backend_failure(client):
    a = np.full((1, 16), FAIL_VALUE, dtype=np.int32)
    inputs, _, _ = simple_inputs(a=a)
    with pytest.raises(InferenceServerException) as e:
        client.infer("simple", inputs)
    assert e.value.status() == "StatusCode.INTERNAL"
    assert "failing value" in e.value.message()
    _still_serving(client)


def test_shared_memory_rpcs_unimplemented(client):
    for call in (lambda: client.get_system_shared_memory_status(),
                 lambda: client.register_system_shared_memory("r", "/k", 16),
                 lambda: client.unregister_system_shared_memory(),
                 lambda: client.get_cuda_shared_memory_status(),
                 lambda: client.unregister_cuda_shared_memory()):
        with pytest.raises(InferenceServerException) as e:
            call()
        assert e.value.status() == "StatusCode.UNIMPLEMENTED"
        assert "shared memory" in e.value.message() or "CUDA" in e.value.message()


def test_shared_memory_input_refused_without_extension(h, client):
    ch, s = stub(h)
    req = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.parameters["shared_memory_region"].string_param = "region"
        t.parameters["shared_memory_byte_size"].int64_param = 64
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "region" in e.value.details()
    ch.close()


def test_trace_setting(client):
    s = client.get_trace_settings(as_json=True)["settings"]
    assert s["trace_level"]["value"] == ["OFF"]
    s = client.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)["settings"]
    assert s["trace_rate"]["value"] == ["5"] and s["trace_mode"]["value"] == ["triton"]
    s = client.update_trace_settings(settings={"trace_rate": None}, as_json=True)["settings"]
    assert s["trace_rate"]["value"] == ["1000"]  # cleared: the default again
    with pytest.raises(InferenceServerException) as e:
        client.update_trace_settings(settings={"trace_level": ["LOUD"]})
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


# --- streaming ----------------------------------------------------------------------------


def _stream(client, sends, timeout=20):
    """Send (model, inputs, kwargs) on one stream; return {request_id: (result, error)}."""
    results: dict = {}
    got = threading.Event()
    n = len(sends)
    lock = threading.Lock()
    errors_without_id: list = []

    def cb(result, error):
        with lock:
            if result is not None:
                results[result.get_response().id] = (result, None)
            else:
                errors_without_id.append(error)
            if len(results) + len(errors_without_id) == n:
                got.set()

    client.start_stream(callback=cb)
    try:
        for model, inputs, kw in sends:
            client.async_stream_infer(model, inputs, **kw)
        assert got.wait(timeout), f"got {len(results)} + {len(errors_without_id)} of {n}"
    finally:
        client.stop_stream()
    return results, errors_without_id


def test_stream_many_with_failure_in_middle(client):
    sends = []
    want = {}
    for i in range(30):
        if i == 15:
            inputs, _, _ = simple_inputs(a=np.full((1, 16), FAIL_VALUE, dtype=np.int32))
        elif i == 20:
            bad = np.zeros((1, 3), dtype=np.int32)
            inputs, _, _ = simple_inputs(a=bad, b=bad)
        else:
            inputs, a, b = simple_inputs(a=np.full((1, 16), i, dtype=np.int32))
            want[str(i)] = a + b
        sends.append(("simple", inputs, {"request_id": str(i)}))
    results, errors = _stream(client, sends)
    assert len(errors) == 2
    msgs = sorted(str(e) for e in errors)
    assert any("failing value" in m for m in msgs) and any("unexpected shape" in m for m in msgs)
    assert set(results) == set(want)
    for rid, (res, _) in results.items():
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), want[rid])
    _still_serving(client)


def test_stream_empty_final_response_flag(client):
    inputs, a, b = simple_inputs()
    results, errors = _stream(client, [("simple", inputs, {"request_id": "x",
                                                           "enable_empty_final_response": True})])
    assert not errors
    res = results["x"][0]
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    assert res.get_response().parameters["triton_final_response"].bool_param is True
    # A model that is not decoupled answers once, marked final, with or without the flag (as Triton).
    results, _ = _stream(client, [("simple", inputs, {"request_id": "y"})])
    assert results["y"][0].get_response().parameters["triton_final_response"].bool_param is True


def test_stream_aio(h):
    async def main():
        async with aioclient.InferenceServerClient(h.url) as c:
            async def requests():
                for i in range(10):
                    ins, _, _ = simple_inputs(a=np.full((1, 16), i, dtype=np.int32))
                    yield {"model_name": "simple", "inputs": ins, "request_id": str(i)}
                yield {"model_name": "nope", "inputs": ins, "request_id": "bad"}

            got = {}
            errors = []
            async for result, error in c.stream_infer(requests()):
                if error is not None:
                    errors.append(error)
                else:
                    got[result.get_response().id] = result.as_numpy("OUTPUT0")
            assert len(got) == 10 and len(errors) == 1
            for i in range(10):
                np.testing.assert_array_equal(got[str(i)], np.full((1, 16), i + 1, dtype=np.int32))
    asyncio.run(main())


# --- statistics, repository, logging -----------------------------------------------------------


def test_statistics(client):
    before = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    inputs, _, _ = simple_inputs(batch=2)
    client.infer("simple", inputs)
    after = client.get_inference_statistics("simple", "1", as_json=True)["model_stats"][0]
    assert after["name"] == "simple" and after["version"] == "1"
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 2
    s_after = after["inference_stats"]["success"]
    s_before = before["inference_stats"].get("success", {})
    assert int(s_after["count"]) == int(s_before.get("count", 0)) + 1
    assert int(s_after["ns"]) > 0
    assert any(int(b["batch_size"]) == 2 for b in after["batch_stats"])
    all_stats = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {m["name"] for m in all_stats} >= {"simple", "simple_string", "classifier"}
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_repository_index(client):
    idx = client.get_model_repository_index(as_json=True)["models"]
    names = {m["name"]: m for m in idx}
    assert names["simple"]["state"] == "READY" and names["simple"]["version"] == "1"


def test_log_settings(client):
    s = client.get_log_settings(as_json=True)["settings"]
    assert s["log_info"]["bool_param"] is True
    s = client.update_log_settings({"log_verbose_level": 2, "log_info": False}, as_json=True)["settings"]
    assert s["log_verbose_level"]["uint32_param"] == 2 and s["log_info"]["bool_param"] is False
    s = client.update_log_settings({"log_verbose_level": 0, "log_info": True}, as_json=True)["settings"]
    assert s["log_verbose_level"]["uint32_param"] == 0
    with pytest.raises(InferenceServerException) as e:
        client.update_log_settings({"log_format": "xml"})
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_load_unload(tmp_path):
    h = Harness(tmp_path)
    c = h.client()
    try:
        assert c.is_model_ready("simple")
        c.unload_model("simple")
        assert not c.is_model_ready("simple")
        idx = {m["name"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
        assert idx["simple"]["state"] == "UNAVAILABLE"
        c.load_model("simple")
        assert c.is_model_ready("simple")
        _still_serving(c)
        # config override: a new model from a config string plus file overrides
        cfg = c.get_model_config("simple", as_json=True)["config"]
        cfg["name"] = "added"
        cfg["max_batch_size"] = 4
        c.load_model("added", config=json.dumps(cfg), files={"file:1/model.txt": b"x"})
        assert c.is_model_ready("added")
        assert c.get_model_config("added").config.max_batch_size == 4
        inputs, a, b = simple_inputs(batch=2)
        np.testing.assert_array_equal(c.infer("added", inputs).as_numpy("OUTPUT0"), a + b)
        with pytest.raises(InferenceServerException) as e:
            c.load_model("evil", config=json.dumps(cfg), files={"file:../../x": b"x"})
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException):
            c.load_model("does_not_exist")
        c.unload_model("added")
        assert not c.is_model_ready("added")
    finally:
        c.close()
        h.close()


def test_compression_and_message_size(tmp_path):
    h = Harness(tmp_path, compression_level="high", max_receive_message_length=4096)
    c = h.client()
    try:
        inputs, a, b = simple_inputs()
        res = c.infer("simple", inputs, compression_algorithm="gzip")
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
        big = np.zeros((8, 16), dtype=np.int32)
        inputs, _, _ = simple_inputs(a=big, b=big, batch=8)
        payload = [grpcclient.InferInput("INPUT0", [1, 2000], "INT32")]
        payload[0].set_data_from_numpy(np.zeros((1, 2000), dtype=np.int32))
        with pytest.raises(InferenceServerException) as e:
            c.infer("simple", payload)
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        _still_serving(c)
    finally:
        c.close()
        h.close()


def test_system_shared_memory(tmp_path):
    shm = pytest.importorskip("tritonclient.utils.shared_memory")
    from triton_core.memory import _native

    if not _native.AVAILABLE:
        pytest.skip("the native layer is not built")
    server = make_server(tmp_path, allow_client_shm=True)
    loop = LoopThread()
    fe = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(fe.start())
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{fe.port}")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    hin = shm.create_shared_memory_region("gin", "/grpc_test_in", 128)
    hout = shm.create_shared_memory_region("gout", "/grpc_test_out", 128)
    try:
        shm.set_shared_memory_region(hin, [a, a])
        c.register_system_shared_memory("gin", "/grpc_test_in", 128)
        c.register_system_shared_memory("gout", "/grpc_test_out", 128)
        st = c.get_system_shared_memory_status(as_json=True)["regions"]
        assert set(st) == {"gin", "gout"}
        i0 = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
        i0.set_shared_memory("gin", 64)
        i1 = grpcclient.InferInput("INPUT1", [1, 16], "INT32")
        i1.set_shared_memory("gin", 64, offset=64)
        o0 = grpcclient.InferRequestedOutput("OUTPUT0")
        o0.set_shared_memory("gout", 64)
        res = c.infer("simple", [i0, i1], outputs=[o0])
        assert res.get_output("OUTPUT0").parameters["shared_memory_region"].string_param == "gout"
        out = shm.get_contents_as_numpy(hout, np.int32, [1, 16])
        np.testing.assert_array_equal(out, a + a)
        c.unregister_system_shared_memory()
        assert not c.get_system_shared_memory_status(as_json=True).get("regions")
    finally:
        c.close()
        shm.destroy_shared_memory_region(hin)
        shm.destroy_shared_memory_region(hout)
        loop.run(fe.stop(0))
        loop.close()
        server.stop()


def test_stream_decoupled_model(tmp_path):
    from expr_backend import REPEAT_DECOUPLED, write_model
    from expr_backend import make_server as make_expr_server

    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    server = make_expr_server(tmp_path)
    server.start()
    loop = LoopThread()
    fe = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(fe.start())
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        s = pb_grpc.GRPCInferenceServiceStub(ch)
        x = np.array([1, 2], np.int32)

        def req(flag):
            r = pb.ModelInferRequest(model_name="repeat", id="d")
            r.inputs.add(name="IN", datatype="INT32", shape=[2])
            r.raw_input_contents.append(x.tobytes())
            if flag:
                r.parameters["triton_enable_empty_final_response"].bool_param = True
            return r

        got = list(s.ModelStreamInfer(iter([req(True)])))
        finals = [m.infer_response.parameters["triton_final_response"].bool_param for m in got]
        assert finals == [False, False, False, True]
        assert not got[-1].infer_response.outputs and got[-1].infer_response.id == "d"
        for i, m in enumerate(got[:3]):
            np.testing.assert_array_equal(np.frombuffer(m.infer_response.raw_output_contents[0], np.int32),
                                          x * i)
        got = list(s.ModelStreamInfer(iter([req(False)])))
        assert len(got) == 3  # no empty final response unless asked for
        with pytest.raises(grpc.RpcError) as e:
            s.ModelInfer(req(False))
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        ch.close()
    finally:
        loop.run(fe.stop(0))
        loop.close()
        server.stop()



def test_only_requested_outputs_are_returned(client):
    inputs, a, b = simple_inputs()
    r = client.infer("simple", inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in r.get_response().outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)


def test_stop_ends_open_streams_and_answers_their_requests(tmp_path):
    # An open stream must not hold shutdown for the whole grace period (it did: an idle
    # stream kept `tritonserver` alive for --exit-timeout-secs); a request in flight on a
    # stream still gets its answer before the stream ends.

    import expr_backend
    from expr_backend import ADD_SUB, write_model
    from expr_backend import make_server as make_expr_server

    gate = 'parameters { key: "block_value" value { string_value: "777" } }\n'
    write_model(tmp_path, "add", ADD_SUB + gate)
    server = make_expr_server(tmp_path)
    server.start()
    loop = LoopThread()
    fe = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(fe.start())
    got: queue.Queue = queue.Queue()
    idle, busy = (grpcclient.InferenceServerClient(f"127.0.0.1:{fe.port}") for _ in range(2))
    expr_backend.GATE.clear()
    try:
        for c in (idle, busy):
            c.start_stream(callback=lambda result, error: got.put((result, error)))
        idle.async_stream_infer("add", simple_inputs()[0])
        result, error = got.get(timeout=10)
        assert error is None
        busy.async_stream_infer("add", simple_inputs(a=np.full((1, 16), 777, np.int32))[0],
                                request_id="b")
        inst = server.manager.get("add").instances[0]
        wait_until(lambda: inst.blocked, "the request to execute and wait on the gate", 10)
        stopped = asyncio.run_coroutine_threadsafe(fe.stop(60), loop.loop)
        expr_backend.GATE.set()
        result, error = got.get(timeout=10)
        assert error is None and result.get_response().id == "b"
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 778, np.int32))
        stopped.result(timeout=20)  # well before the 60 s grace
    finally:
        expr_backend.GATE.set()
        for c in (idle, busy):
            c.close()
        loop.close()
        server.stop()


@pytest.mark.parametrize("engine", ["h2", "grpcio"])
def test_restricted_protocol_with_a_binary_header(tmp_path, engine):
    """A -bin key's value is compared decoded, as Triton compares the metadata's bytes."""
    h = Harness(tmp_path, engine=engine, restricted={"health": ("x-key-bin", "secret")})
    c = h.client()
    try:
        with pytest.raises(InferenceServerException, match="expecting header 'x-key-bin'"):
            c.is_server_live()
        with pytest.raises(InferenceServerException, match="restricted"):
            c.is_server_live(headers={"x-key-bin": b"wrong"})
        assert c.is_server_live(headers={"x-key-bin": b"secret"})
    finally:
        c.close()
        h.close()
