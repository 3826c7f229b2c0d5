"""TorchScript models served over HTTP and gRPC, through tritonclient: results, dynamic
batching, strings, and bad inputs and bad models answered with clear errors while the server
keeps serving."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import List  # noqa: UP035 - TorchScript reads typing's generics

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from torch_backend_helpers import save_script
from tritonclient.utils import InferenceServerException

from triton_backend_torch import plugin
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.testing import LoopThread, make_server, serving_http

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class AddSub(torch.nn.Module):
    def forward(self, INPUT0: torch.Tensor, INPUT1: torch.Tensor):  # noqa: N803
        return INPUT0 + INPUT1, INPUT0 - INPUT1


class BatchSeen(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return torch.full([x.shape[0], 1], x.shape[0], dtype=torch.int64)


class Upper(torch.nn.Module):
    def forward(self, text: List[str]) -> List[str]:  # noqa: UP006
        return [s.upper() for s in text]


class Fails(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() < 0):
            raise RuntimeError("negative input")
        return x


BATCH = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    save_script(repo, "addsub", AddSub(), """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [4] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [4] },
        { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [4] }]
dynamic_batching {}""")
    # preferred size reached: the batch runs at once; the long delay only bounds a lost request
    save_script(repo, "seen", BatchSeen(), f"""
max_batch_size: 8
input [{{ name: "x" data_type: TYPE_FP32 dims: [1] }}]
output [{{ name: "n" data_type: TYPE_INT64 dims: [1] }}]
dynamic_batching {{ preferred_batch_size: [{BATCH}] max_queue_delay_microseconds: 30000000 }}""")
    save_script(repo, "upper", Upper(), """
max_batch_size: 4
input [{ name: "text" data_type: TYPE_STRING dims: [1] }]
output [{ name: "out" data_type: TYPE_STRING dims: [1] }]""")
    save_script(repo, "fails", Fails(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]""")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.pt").write_bytes(b"\x00garbage")
    shutil.copy(repo / "fails" / "config.pbtxt", repo / "broken" / "config.pbtxt")
    server = make_server(repo, plugin, model_control_mode="explicit",
                         load_model=["addsub", "seen", "upper", "fails"])
    server.start()
    loop = LoopThread()
    front = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(front.start())
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
    try:
        with serving_http(server) as url:
            yield httpclient.InferenceServerClient(url, concurrency=BATCH), grpc
    finally:
        grpc.close()
        loop.run(front.stop(0))
        loop.close()
        server.stop()


def _inputs(mod, **arrays):
    out = []
    for name, arr in arrays.items():
        dt = "BYTES" if arr.dtype == object else {np.float32: "FP32", np.float64: "FP64"}[arr.dtype.type]
        i = mod.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr)
        out.append(i)
    return out


A = np.arange(8, dtype=np.float32).reshape(2, 4)
B = np.full((2, 4), 0.5, np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_add_sub(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    result = client.infer("addsub", _inputs(mod, INPUT0=A, INPUT1=B))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), A + B)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__1"), A - B)


def test_config_reports_backend_and_platform(served):
    cfg = served[0].get_model_config("addsub")
    assert cfg["backend"] == "pytorch" and cfg["platform"] == "pytorch_libtorch"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_strings(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    text = np.array([[b"hello"], [b"w\xc3\xb6rld"]], dtype=object)
    result = client.infer("upper", _inputs(mod, text=text))
    assert result.as_numpy("out").tolist() == [[b"HELLO"], [b"W\xc3\xb6RLD"]]


def test_dynamic_batching_runs_concurrent_requests_as_one_batch(served):
    http = served[0]
    pending = [http.async_infer("seen", _inputs(httpclient, x=np.ones((1, 1), np.float32)))
               for _ in range(BATCH)]
    seen = [int(p.get_result().as_numpy("n")[0, 0]) for p in pending]
    assert seen == [BATCH] * BATCH


def test_non_utf8_string_is_invalid_arg_and_serving_goes_on(served):
    _, grpc = served
    with pytest.raises(InferenceServerException) as e:
        grpc.infer("upper", _inputs(grpcclient, text=np.array([[b"\xff"]], dtype=object)))
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not valid UTF-8" in e.value.message()
    result = grpc.infer("upper", _inputs(grpcclient, text=np.array([[b"ok"]], dtype=object)))
    assert result.as_numpy("out").tolist() == [[b"OK"]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_datatype_is_refused(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    with pytest.raises(InferenceServerException) as e:
        client.infer("addsub", _inputs(mod, INPUT0=A.astype(np.float64), INPUT1=B))
    assert "INPUT0" in e.value.message() and "FP64" in e.value.message()
    client.infer("addsub", _inputs(mod, INPUT0=A, INPUT1=B))


def test_execute_failure_reaches_the_client_and_serving_goes_on(served):
    http, grpc = served
    with pytest.raises(InferenceServerException) as e:
        http.infer("fails", _inputs(httpclient, x=np.array([-1], np.float32)))
    assert "PyTorch execute failure" in e.value.message() and "negative input" in e.value.message()
    with ThreadPoolExecutor(4) as pool:  # concurrent good requests after the failure
        results = list(pool.map(
            lambda v: grpc.infer("fails", _inputs(grpcclient, x=np.array([v], np.float32))), [1, 2, 3, 4]))
    assert [float(r.as_numpy("y")[0]) for r in results] == [1, 2, 3, 4]


def test_broken_model_fails_its_load_and_the_others_serve(served):
    http, grpc = served
    with pytest.raises(InferenceServerException) as e:
        http.load_model("broken")
    assert "broken" in e.value.message() and "not a PyTorch archive" in e.value.message()
    assert not http.is_model_ready("broken")
    assert grpc.is_model_ready("addsub")
    grpc.infer("addsub", _inputs(grpcclient, INPUT0=A, INPUT1=B))
