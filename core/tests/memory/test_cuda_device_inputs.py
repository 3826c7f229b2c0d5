"""Inputs read from a CUDA region reach a GPU instance as device memory, and a GPU output
goes into its region device to device; CPU instances and backends that do not take device
tensors get host copies. CUDA is faked at the CudaRuntime boundary (fake_cuda.HostCuda,
which counts copies as CudaPython does); the same path on a real GPU, with torch, runs in
plugins/triton-backend-torch/tests/test_torch_gpu.py."""

from __future__ import annotations

import base64
import types
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from fake_cuda import ONE_GPU, HostCuda
from tritonclient.utils import InferenceServerException

from live_server import serving_http
from triton_core import abi, testing
from triton_core.dtypes import DataType
from triton_core.errors import TritonError
from triton_core.memory.cuda_shm import CudaSharedMemoryRegistry
from triton_core.memory.device_array import CudaArray
from triton_core.memory.io import SharedMemoryIO
from triton_core.memory.registry import SystemSharedMemoryRegistry
from triton_core.request import InferenceResponse
from triton_core.tensor import Tensor

A = np.arange(8, dtype=np.float32).reshape(2, 4)


def _io_with_region(data: bytes) -> tuple[SharedMemoryIO, HostCuda, int]:
    cuda = HostCuda()
    reg = CudaSharedMemoryRegistry(ONE_GPU, cuda)
    h = cuda.allocate(len(data) + 16)
    reg.register("r", h, 0, len(data) + 16)
    ptr = next(iter(cuda.open))
    cuda.ptrs[ptr][16:] = data
    return SharedMemoryIO(SystemSharedMemoryRegistry(), reg), cuda, ptr


def test_an_input_from_a_cuda_region_is_a_view_of_its_device_memory() -> None:
    io, cuda, ptr = _io_with_region(A.tobytes())
    t = io.input_tensor("X", DataType.FP32, [2, 4], {
        "shared_memory_region": "r", "shared_memory_byte_size": A.nbytes,
        "shared_memory_offset": 16})
    dev = t.device_array()
    assert isinstance(dev, CudaArray) and dev.device_id == 0
    assert dev.__cuda_array_interface__ == {
        "shape": (2, 4), "typestr": "<f4", "data": (ptr + 16, False), "strides": None,
        "version": 3, "stream": None}
    assert not cuda.copies  # nothing copied until someone asks for host memory
    np.testing.assert_array_equal(t.as_numpy(), A)
    assert cuda.copies == {"device_to_host": 1}


def test_the_region_stays_open_while_a_device_input_lives() -> None:
    io, cuda, ptr = _io_with_region(A.tobytes())
    t = io.input_tensor("X", DataType.FP32, [2, 4], {
        "shared_memory_region": "r", "shared_memory_byte_size": A.nbytes,
        "shared_memory_offset": 16})
    io.cuda.unregister("r")
    assert cuda.closed == []  # the tensor's lease holds the IPC mapping
    t.to_host()  # the host copy lets go of the device memory, and so of the lease
    assert cuda.closed == [ptr]
    np.testing.assert_array_equal(t.as_numpy(), A)


@pytest.mark.parametrize("shape, offset", [([0], 10**6), ([2, 4], 10**6), ([4, 4], 16)])
def test_an_input_outside_its_region_is_refused_and_holds_no_lease(shape, offset) -> None:
    """Checked at every size (an empty input at a bad offset was let through), in Triton's
    words, and the region can still be unregistered and closed at once."""
    io, cuda, ptr = _io_with_region(A.tobytes())
    size = int(np.prod(shape)) * 4
    with pytest.raises(TritonError, match="Invalid offset.*for shared memory region: 'r'"):
        io.input_tensor("X", DataType.FP32, shape, {
            "shared_memory_region": "r", "shared_memory_byte_size": size,
            "shared_memory_offset": offset})
    io.cuda.unregister("r")
    assert cuda.closed == [ptr]


def test_bytes_and_bf16_inputs_are_read_to_the_host() -> None:
    io, cuda, _ = _io_with_region(np.zeros(4, np.uint16).tobytes())
    t = io.input_tensor("X", DataType.BF16, [4], {
        "shared_memory_region": "r", "shared_memory_byte_size": 8, "shared_memory_offset": 16})
    assert t.device_array() is None and cuda.copies == {"device_to_host": 1}


def test_a_device_input_is_reshaped_on_its_device() -> None:
    io, cuda, ptr = _io_with_region(A.tobytes())
    t = io.input_tensor("X", DataType.FP32, [2, 4], {
        "shared_memory_region": "r", "shared_memory_byte_size": A.nbytes,
        "shared_memory_offset": 16})
    t.reshape([2, -1, 2])
    assert t.shape == (2, 2, 2) and t.device_array().shape == (2, 2, 2)
    assert t.device_array().ptr == ptr + 16 and not cuda.copies
    with pytest.raises(TritonError, match="cannot reshape"):
        t.reshape([3, -1])


def test_a_device_output_goes_into_a_cuda_region_device_to_device() -> None:
    io, cuda, ptr = _io_with_region(A.tobytes())
    src = io.input_tensor("X", DataType.FP32, [2, 4], {
        "shared_memory_region": "r", "shared_memory_byte_size": A.nbytes,
        "shared_memory_offset": 16})
    h = cuda.allocate(64)
    io.cuda.register("out", h, 0, 64)
    out = Tensor.from_device("Y", DataType.FP32, src.device_array())
    params = io.write_output(out, {"shared_memory_region": "out",
                                   "shared_memory_byte_size": 64, "shared_memory_offset": 8})
    assert params == {"shared_memory_region": "out", "shared_memory_byte_size": A.nbytes,
                      "shared_memory_offset": 8}
    assert cuda.copies == {"device_to_device": 1}
    np.testing.assert_array_equal(np.frombuffer(bytes(cuda.allocs[h][8:40]), np.float32),
                                  A.ravel())
    with pytest.raises(TritonError, match="should be at least 32 bytes"):
        io.write_output(out, {"shared_memory_region": "out", "shared_memory_byte_size": 16})


def test_a_device_output_into_the_body_is_copied_to_the_host() -> None:
    io, cuda, _ = _io_with_region(A.tobytes())
    src = io.input_tensor("X", DataType.FP32, [2, 4], {
        "shared_memory_region": "r", "shared_memory_byte_size": A.nbytes,
        "shared_memory_offset": 16})
    out = Tensor.from_device("Y", DataType.FP32, src.device_array())
    assert bytes(out.to_bytes()) == A.tobytes() and cuda.copies == {"device_to_host": 1}


def test_from_interface_takes_contiguous_arrays_only() -> None:
    class Foreign:
        def __init__(self, strides):
            self.__cuda_array_interface__ = {"shape": (2, 3), "typestr": "<i4",
                                             "data": (0x5000, False), "strides": strides,
                                             "version": 3}

    arr = CudaArray.from_interface(Foreign(None), 0)
    assert (arr.ptr, arr.shape, arr.nbytes) == (0x5000, (2, 3), 24)
    assert CudaArray.from_interface(Foreign((12, 4)), 0).shape == (2, 3)
    with pytest.raises(TritonError, match="not row-major"):
        CudaArray.from_interface(Foreign((4, 8)), 0)
    with pytest.raises(TritonError, match="int32 cannot hold FP64"):
        Tensor.from_device("Y", DataType.FP64, CudaArray.from_interface(Foreign(None), 0))


# -- through the server: which instances see device memory -------------------------------

IO = """max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [2, 4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [2, 4] }]
"""


def _plugin(device_tensors: bool):
    seen: list[tuple[str, str, object]] = []

    class Instance(abi.Instance):
        def __init__(self, ctx: abi.InstanceContext) -> None:
            self.ctx = ctx

        def execute(self, requests, timer):
            out = []
            for r in requests:
                dev = r.inputs["X"].device_array()
                seen.append((self.ctx.kind, r.model_name, dev))
                if dev is not None:  # a GPU backend: the result stays on the GPU
                    out.append(InferenceResponse(outputs=[Tensor.from_device("Y", DataType.FP32,
                                                                             dev)]))
                else:
                    out.append(InferenceResponse(outputs=[
                        Tensor.from_numpy("Y", r.inputs["X"].as_numpy() * 1)]))
            return out

    class Model(abi.Model):
        def __init__(self, ctx: abi.ModelContext) -> None:
            self.config = ctx.config

        def create_instance(self, ctx: abi.InstanceContext) -> Instance:
            return Instance(ctx)

    class Backend(abi.Backend):
        def load_model(self, ctx: abi.ModelContext) -> Model:
            return Model(ctx)

    def triton_backends():
        yield abi.BackendSpec(name="dev", factory=lambda ctx: Backend(), gpu=True,
                              device_tensors=device_tensors, abi=(1, 5))

    mod = types.ModuleType(f"dev_plugin_{device_tensors}")
    mod.triton_backends = triton_backends  # type: ignore[attr-defined]
    return mod, seen


def _repo(tmp_path: Path) -> None:
    for name, group in (("on_gpu", "KIND_GPU"), ("on_cpu", "KIND_CPU")):
        d = tmp_path / name
        (d / "1").mkdir(parents=True)
        (d / "config.pbtxt").write_text(
            f'backend: "dev"\ninstance_group [{{ kind: {group} }}]\n{IO}')


@pytest.mark.parametrize("device_tensors", [True, False])
def test_only_gpu_instances_of_a_device_tensor_backend_see_device_memory(
        tmp_path: Path, device_tensors: bool) -> None:
    _repo(tmp_path)
    plugin, seen = _plugin(device_tensors)
    server = testing.make_server(tmp_path, plugin, allow_client_shm=True)
    server.manager.gpus = ONE_GPU
    cuda = HostCuda()
    server.start()
    try:
        server.cuda_shm_registry.gpus = ONE_GPU
        server.cuda_shm_registry._runtime = cuda  # the CUDA boundary
        with serving_http(server) as url:
            client = httpclient.InferenceServerClient(url)
            hin, hout = cuda.allocate(A.nbytes), cuda.allocate(A.nbytes)
            cuda.allocs[hin][:] = A.tobytes()
            client.register_cuda_shared_memory("in", base64.b64encode(hin), 0, A.nbytes)
            client.register_cuda_shared_memory("out", base64.b64encode(hout), 0, A.nbytes)
            for model in ("on_gpu", "on_cpu"):
                x = httpclient.InferInput("X", [2, 4], "FP32")
                x.set_shared_memory("in", A.nbytes)
                y = httpclient.InferRequestedOutput("Y")
                y.set_shared_memory("out", A.nbytes)
                cuda.copies.clear()
                client.infer(model, [x], outputs=[y])
                np.testing.assert_array_equal(
                    np.frombuffer(bytes(cuda.allocs[hout]), np.float32).reshape(2, 4), A)
                if model == "on_gpu" and device_tensors:
                    assert cuda.copies == {"device_to_device": 1}  # never through the host
                else:
                    assert cuda.copies == {"device_to_host": 1, "host_to_device": 1}
                cuda.allocs[hout][:] = bytes(A.nbytes)
            kinds = [(kind, dev is not None) for kind, _, dev in seen]
            assert kinds == [("KIND_GPU", device_tensors), ("KIND_CPU", False)]
            # a body input is host memory for every instance
            x = httpclient.InferInput("X", [2, 4], "FP32")
            x.set_data_from_numpy(A)
            got = client.infer("on_gpu", [x]).as_numpy("Y")
            np.testing.assert_array_equal(got, A)
            assert seen[-1][2] is None
    finally:
        server.stop()


def test_a_failed_host_copy_fails_that_request_and_the_server_serves_on(tmp_path: Path) -> None:
    _repo(tmp_path)
    plugin, _ = _plugin(True)
    server = testing.make_server(tmp_path, plugin, allow_client_shm=True)
    server.manager.gpus = ONE_GPU
    cuda = HostCuda()

    def broken(ptr, size, device_id):
        from triton_core.memory.cuda_shm import CudaError
        raise CudaError("cudaMemcpy (device to host): an illegal memory access was encountered")

    cuda.copy_to_host = broken  # type: ignore[method-assign]
    server.start()
    try:
        server.cuda_shm_registry.gpus = ONE_GPU
        server.cuda_shm_registry._runtime = cuda
        with serving_http(server) as url:
            client = httpclient.InferenceServerClient(url)
            hin = cuda.allocate(A.nbytes)
            client.register_cuda_shared_memory("in", base64.b64encode(hin), 0, A.nbytes)
            x = httpclient.InferInput("X", [2, 4], "FP32")
            x.set_shared_memory("in", A.nbytes)
            with pytest.raises(InferenceServerException,
                               match="failed to copy a GPU tensor to the host: .*illegal"):
                client.infer("on_cpu", [x])
            y = httpclient.InferInput("X", [2, 4], "FP32")
            y.set_data_from_numpy(A)
            np.testing.assert_array_equal(client.infer("on_cpu", [y]).as_numpy("Y"), A)
    finally:
        server.stop()
