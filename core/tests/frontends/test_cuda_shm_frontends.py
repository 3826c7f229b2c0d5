"""The CUDA shared-memory extension over HTTP and gRPC with tritonclient: without a GPU
(status empty, unregister fine, register refused with Triton's words) and with a GPU
faked at the CudaRuntime boundary (registration, inference through the regions). The
same calls against a real GPU: core/tests/gpu."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from fake_cuda import ONE_GPU, HostCuda
from tritonclient.utils import InferenceServerException

from expr_backend import ADD_SUB, make_server, write_model
from live_server import serving_http
from triton_core.devices import Gpus
from triton_core.frontends.grpc.service import GrpcFrontEnd
from triton_core.testing import LoopThread

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=["http", "grpc"])
def served(tmp_path, request):
    """(protocol, client, server, cuda) for a server with --allow-client-shm."""
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path, allow_client_shm=True) as server:
        cuda = HostCuda()
        reg = server.cuda_shm_registry
        reg.gpus = Gpus([])
        reg._runtime = cuda  # the CUDA boundary: host memory stands in for the GPU
        if request.param == "http":
            with serving_http(server) as url:
                yield "http", httpclient.InferenceServerClient(url), server, cuda
        else:
            loop = LoopThread()
            fe = GrpcFrontEnd(server, "127.0.0.1", 0)
            loop.run(fe.start())
            try:
                yield "grpc", grpcclient.InferenceServerClient(f"127.0.0.1:{fe.port}"), server, cuda
            finally:
                loop.run(fe.stop(0))
                loop.close()


def _regions(proto: str, status) -> list:
    return list(status) if proto == "http" else list(status.regions)


def test_without_a_gpu_status_and_unregister_answer_register_is_refused(served) -> None:
    proto, client, _, cuda = served
    assert _regions(proto, client.get_cuda_shared_memory_status()) == []
    client.unregister_cuda_shared_memory()  # Triton's examples do this first
    client.unregister_cuda_shared_memory("never_registered")
    raw = base64.b64encode(cuda.allocate(64))
    with pytest.raises(InferenceServerException,
                       match="failed to register shared memory region.*invalid args") as e:
        client.register_cuda_shared_memory("r", raw, 0, 64)
    assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert "device 0 is not a GPU of this server" in e.value.message()


def test_register_infer_and_unregister_through_cuda_regions(served) -> None:
    proto, client, server, cuda = served
    server.cuda_shm_registry.gpus = ONE_GPU
    mod = httpclient if proto == "http" else grpcclient
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    n = a.nbytes
    hin, hout = cuda.allocate(2 * n), cuda.allocate(2 * n)
    cuda.allocs[hin][:] = a.tobytes() + b.tobytes()
    client.register_cuda_shared_memory("in", base64.b64encode(hin), 0, 2 * n)
    client.register_cuda_shared_memory("out", base64.b64encode(hout), 0, 2 * n)
    status = _regions(proto, client.get_cuda_shared_memory_status())
    assert len(status) == 2
    one = client.get_cuda_shared_memory_status("in")
    row = one[0] if proto == "http" else one.regions["in"]
    got = row if proto == "http" else {"name": row.name, "device_id": row.device_id,
                                       "byte_size": row.byte_size}
    assert got == {"name": "in", "device_id": 0, "byte_size": 2 * n}
    i0, i1 = mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")
    i0.set_shared_memory("in", n)
    i1.set_shared_memory("in", n, offset=n)
    o0, o1 = mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")
    o0.set_shared_memory("out", n)
    o1.set_shared_memory("out", n, offset=n)
    client.infer("add", [i0, i1], outputs=[o0, o1])
    out = np.frombuffer(bytes(cuda.allocs[hout]), dtype=np.int32)
    assert (out[:16] == (a + b).ravel()).all() and (out[16:] == (a - b).ravel()).all()
    # a window past the registered size: Triton's words
    i0.set_shared_memory("in", n, offset=2 * n - 4)
    with pytest.raises(InferenceServerException, match="Invalid offset \\+ byte size"):
        client.infer("add", [i0, i1])
    with pytest.raises(InferenceServerException, match="already in manager"):
        client.register_cuda_shared_memory("in", base64.b64encode(hin), 0, 2 * n)
    client.unregister_cuda_shared_memory("in")
    assert len(_regions(proto, client.get_cuda_shared_memory_status())) == 1
    client.unregister_cuda_shared_memory()
    assert _regions(proto, client.get_cuda_shared_memory_status()) == []
    assert "in" not in server.cuda_shm_registry and "out" not in server.cuda_shm_registry


def test_http_register_body_checks(tmp_path) -> None:
    from http_helpers import request

    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path, allow_client_shm=True) as server, serving_http(server) as addr:
        server.cuda_shm_registry.gpus = ONE_GPU
        path = "/v2/cudasharedmemory/region/r/register"
        status, _, body = request(addr, "POST", path, b'{"device_id": 0, "byte_size": 8}')
        assert status == 400 and b"Shared memory register request has no 'raw_handle' field" in body
        short = base64.b64encode(b"\0" * 8).decode()
        status, _, body = request(
            addr, "POST", path,
            f'{{"raw_handle": {{"b64": "{short}"}}, "device_id": 0, "byte_size": 8}}'.encode())
        assert status == 400
        assert b"'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t" in body
        status, _, body = request(addr, "POST", path, b'{"raw_handle": {"b64": ""}, "byte_size": 8}')
        assert status == 400 and b"'device_id'" in body
        status, _, _ = request(addr, "GET", "/v2/health/live")
        assert status == 200


def test_the_extension_is_listed_only_where_registrations_can_succeed(tmp_path) -> None:
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path, allow_client_shm=True) as server:
        reg = server.cuda_shm_registry
        reg.gpus = Gpus([])
        assert "cuda_shared_memory" not in server.extensions()  # no GPU
        reg.gpus = ONE_GPU
        assert "cuda_shared_memory" in server.extensions()
        reg.refused = "several front-end processes"  # --frontend-processes N > 1
        assert "cuda_shared_memory" not in server.extensions()
