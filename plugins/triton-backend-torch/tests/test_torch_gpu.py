"""A KIND_GPU torch model on a real GPU: over HTTP and gRPC with tritonclient, and fed from
CUDA shared memory without a trip through host memory (checked inside the process: the
tensor the model gets is the region's memory, and the core's CUDA runtime counts no
host copy). Marked ``gpu``; skipped where torch sees no CUDA device (CI has none).

The regions are made by a child process (cuda_region_client), as a client makes them.
Run on a GPU machine with
``python -m pytest plugins/triton-backend-torch/tests/test_torch_gpu.py -v``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cuda_region_client import RegionClient
from torch_backend_helpers import save_script

from triton_backend_torch import plugin
from triton_backend_torch.instance import TorchInstance
from triton_core.testing import LoopThread, make_server, serving_http

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device visible to torch (needs an NVIDIA GPU and a CUDA "
                              "build of torch)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

SHAPE = (4, 256)
A = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
N = A.nbytes

class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def _config(kind: str) -> str:
    return f"""
max_batch_size: 0
input [{{ name: "x" data_type: TYPE_FP32 dims: [{SHAPE[0]}, {SHAPE[1]}] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [{SHAPE[0]}, {SHAPE[1]}] }}]
instance_group [{{ kind: {kind} count: 1 }}]"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, {"http": client, "grpc": client}) over "double_gpu" and "double_cpu"."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from triton_core.frontends.grpc import GrpcFrontEnd

    repo = tmp_path_factory.mktemp("repo")
    save_script(repo, "double_gpu", Double(), _config("KIND_GPU"))
    save_script(repo, "double_cpu", Double(), _config("KIND_CPU"))
    server = make_server(repo, plugin, allow_client_shm=True)
    server.start()
    loop = LoopThread()
    front = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(front.start())
    try:
        with serving_http(server) as url:
            yield server, {"http": httpclient.InferenceServerClient(url),
                           "grpc": grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")}
    finally:
        loop.run(front.stop(0))
        loop.close()
        server.stop()


@pytest.fixture
def fed(monkeypatch):
    """The GPU tensors the torch instances were fed from device memory (device, data_ptr)."""
    seen: list[tuple[torch.device, int]] = []
    feed = TorchInstance._feed_gpu

    def spy(self, *args, **kwargs):
        t = feed(self, *args, **kwargs)
        seen.append((t.device, t.data_ptr()))
        return t

    monkeypatch.setattr(TorchInstance, "_feed_gpu", spy)
    return seen


def _module(proto: str):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return httpclient if proto == "http" else grpcclient


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_kind_gpu_model_over_the_body(served, proto: str) -> None:
    server, clients = served
    mod = _module(proto)
    x = mod.InferInput("x", list(SHAPE), "FP32")
    x.set_data_from_numpy(A)
    np.testing.assert_array_equal(clients[proto].infer("double_gpu", [x]).as_numpy("y"), A * 2)
    inst = server.manager.get("double_gpu").instances[0]
    assert inst.placement.device == torch.device("cuda", 0)
    print(proto, "double_gpu runs on", inst.placement.device, torch.cuda.get_device_name(0))


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_cuda_shm_feeds_a_gpu_instance_without_a_host_copy(served, fed, proto: str) -> None:
    from triton_core.memory.device_array import shared_runtime

    server, clients = served
    client, mod, regions = clients[proto], _module(proto), server.cuda_shm_registry
    owner = RegionClient(N, 0)
    try:
        client.register_cuda_shared_memory("in", owner.hin, 0, N)
        client.register_cuda_shared_memory("out", owner.hout, 0, N)
        x = mod.InferInput("x", list(SHAPE), "FP32")
        x.set_shared_memory("in", N)
        y = mod.InferRequestedOutput("y")
        y.set_shared_memory("out", N)
        copies = shared_runtime().copies
        before = dict(copies)
        client.infer("double_gpu", [x], outputs=[y])
        after = dict(copies)
        np.testing.assert_array_equal(owner.read(np.float32, SHAPE), A * 2)
        region_ptr = regions._regions["in"].ptr  # noqa: SLF001 - where the server mapped it
        print(proto, "fed", fed, "region at", hex(region_ptr), "copies", before, "->", after)
        assert fed == [(torch.device("cuda", 0), region_ptr)]  # the region's memory itself
        assert after.get("device_to_host", 0) == before.get("device_to_host", 0)
        assert after.get("host_to_device", 0) == before.get("host_to_device", 0)
        assert after["device_to_device"] == before.get("device_to_device", 0) + 1  # the output

        # the same region into a CPU instance: one copy down, one up
        before = dict(copies)
        client.infer("double_cpu", [x], outputs=[y])
        after = dict(copies)
        np.testing.assert_array_equal(owner.read(np.float32, SHAPE), A * 2)
        assert after["device_to_host"] == before.get("device_to_host", 0) + 1
        assert after["host_to_device"] == before.get("host_to_device", 0) + 1
        assert len(fed) == 1
    finally:
        client.unregister_cuda_shared_memory()
        owner.close()


def test_a_region_on_a_device_the_server_does_not_use_is_refused(served) -> None:
    from tritonclient.utils import InferenceServerException

    _, clients = served
    owner = RegionClient(N, 0)
    try:
        missing = torch.cuda.device_count()
        with pytest.raises(InferenceServerException) as e:
            clients["http"].register_cuda_shared_memory("far", owner.hin, missing, N)
        print(e.value.message())
        assert "failed to register shared memory region 'far': invalid args" in e.value.message()
        assert f"device {missing} is not a GPU of this server" in e.value.message()
    finally:
        owner.close()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (issue #26): one "
                    "GPU holds the region, the instance runs on the other")
def test_a_region_on_another_gpu_is_copied_device_to_device(fed, tmp_path) -> None:
    import tritonclient.http as httpclient

    from triton_core.memory.device_array import shared_runtime

    save_script(tmp_path, "double_gpu1", Double(),
                _config("KIND_GPU").replace("count: 1", "count: 1 gpus: [ 1 ]"))
    owner = RegionClient(N, 0)  # the region on GPU 0, the instance on GPU 1
    try:
        with make_server(tmp_path, plugin, allow_client_shm=True) as server, \
                serving_http(server) as url:
            c = httpclient.InferenceServerClient(url)
            c.register_cuda_shared_memory("in", owner.hin, 0, N)
            c.register_cuda_shared_memory("out", owner.hout, 0, N)
            x = httpclient.InferInput("x", list(SHAPE), "FP32")
            x.set_shared_memory("in", N)
            y = httpclient.InferRequestedOutput("y")
            y.set_shared_memory("out", N)
            before = dict(shared_runtime().copies)
            c.infer("double_gpu1", [x], outputs=[y])
            after = dict(shared_runtime().copies)
            np.testing.assert_array_equal(owner.read(np.float32, SHAPE), A * 2)
            assert fed == [(torch.device("cuda", 1), fed[0][1])]
            assert after.get("device_to_host", 0) == before.get("device_to_host", 0)
            assert after.get("host_to_device", 0) == before.get("host_to_device", 0)
            c.unregister_cuda_shared_memory()
    finally:
        owner.close()


class TwoGpus(torch.nn.Module):
    """A KIND_MODEL model that puts its own layers on GPUs 0 and 1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(SHAPE[1], SHAPE[1]).to("cuda:0")
        self.b = torch.nn.Linear(SHAPE[1], SHAPE[1]).to("cuda:1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x.to("cuda:0")))
        return self.b(h.to("cuda:1"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (issue #26)")
def test_instances_spread_over_gpus_and_a_model_over_two_gpus(tmp_path) -> None:
    import tritonclient.http as httpclient

    n = torch.cuda.device_count()
    save_script(tmp_path, "every_gpu", Double(), _config("KIND_GPU").replace("count: 1", "count: 2"))
    save_script(tmp_path, "gpu1_only", Double(),
                _config("KIND_GPU").replace("count: 1", "count: 2 gpus: [ 1 ]"))
    module = TwoGpus()
    save_script(tmp_path, "two_gpus", module, _config("KIND_MODEL"))
    with make_server(tmp_path, plugin) as server, serving_http(server) as url:
        where = {m: sorted(str(i.placement.device) for i in server.manager.get(m).instances)
                 for m in ("every_gpu", "gpu1_only")}
        print(where)
        assert where["every_gpu"] == sorted(f"cuda:{d}" for d in range(n) for _ in range(2))
        assert where["gpu1_only"] == ["cuda:1", "cuda:1"]
        c = httpclient.InferenceServerClient(url)
        x = httpclient.InferInput("x", list(SHAPE), "FP32")
        x.set_data_from_numpy(A)
        got = c.infer("two_gpus", [x]).as_numpy("y")
        want = module(torch.from_numpy(A)).detach().cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        for m in ("every_gpu", "gpu1_only"):
            np.testing.assert_array_equal(c.infer(m, [x]).as_numpy("y"), A * 2)
