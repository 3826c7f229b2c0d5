"""GPU tensors in the python backend, up to the CUDA call: DLPack capsules read and made by
pb_utils (GPU capsules built here over an address that is never touched), pb_utils.Tensor's
GPU form and Triton's words, and a KIND_GPU model's inputs from a CUDA region (faked at the
server's CUDA boundary): host copies by default, the region's handle with
FORCE_CPU_ONLY_INPUT_TENSORS "no". The same on a real GPU: test_gpu_tensors_on_gpu.py."""

from __future__ import annotations

import base64
import gc
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from fake_cuda import ONE_GPU, HostCuda
from python_backend_helpers import make_server
from tritonclient.utils import InferenceServerException

import triton_python_backend_utils as pb_utils
from live_server import serving_http
from triton_python_backend_utils import _gpu

FAKE_GPU_PTR = 0x7F00_0000_0000  # a device address: never dereferenced by these tests


def _gpu_capsule(shape=(2, 3), dtype=np.float32, device=0, owner=None):
    return _gpu.make_capsule(FAKE_GPU_PTR, shape, np.dtype(dtype), False, _gpu.KDL_CUDA, device,
                             owner)


def test_a_capsule_made_over_host_memory_is_read_by_numpy_and_freed_by_it() -> None:
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    before = len(_gpu._live)
    cap = _gpu.make_capsule(a.ctypes.data, a.shape, a.dtype, False, _gpu.KDL_CPU, 0, a)
    assert _gpu.read_capsule(cap)[:3] == (a.ctypes.data, (2, 3), np.dtype("<i2"))
    got = np.from_dlpack(pb_utils._Capsule(cap))
    np.testing.assert_array_equal(got, a)
    del cap
    assert len(_gpu._live) == before + 1  # numpy holds it (it consumed the capsule)
    del got
    gc.collect()
    assert len(_gpu._live) == before  # numpy called the deleter


def test_an_unconsumed_capsule_frees_its_memory_when_it_goes() -> None:
    before = len(_gpu._live)
    cap = _gpu_capsule()
    assert len(_gpu._live) == before + 1
    del cap
    gc.collect()
    assert len(_gpu._live) == before


def test_a_gpu_capsule_becomes_a_gpu_tensor_without_any_cuda_call() -> None:
    t = pb_utils.Tensor.from_dlpack("x", _gpu_capsule((4, 5), np.float16, device=1))
    assert not t.is_cpu()
    assert t.__dlpack_device__() == (2, 1)
    assert t.shape() == [4, 5] and t.triton_dtype() == pb_utils.TYPE_FP16
    assert t.name() == "x" and "cuda:1" in repr(t)
    with pytest.raises(pb_utils.TritonModelException) as e:
        t.as_numpy()
    assert str(e.value) == "Tensor is stored in GPU and cannot be converted to NumPy."
    # to_dlpack: a fresh capsule over the same device memory, for any consumer
    again = _gpu.read_capsule(t.to_dlpack())
    assert again[0] == FAKE_GPU_PTR and again[1] == (4, 5) and again[4:] == (2, 1)
    assert t._gpu.__cuda_array_interface__["data"] == (FAKE_GPU_PTR, False)


def test_an_object_on_the_gpu_is_taken_through_its_capsule() -> None:
    class OnGpu:  # what torch.Tensor / cupy.ndarray look like to DLPack
        def __init__(self) -> None:
            self.streams: list[object] = []

        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, stream=None):
            self.streams.append(stream)
            return _gpu_capsule((3,), np.int64)

    obj = OnGpu()
    try:
        # the producer's queued work is waited for (cudaDeviceSynchronize): the first CUDA
        # call, which fails where there is no GPU
        t = pb_utils.Tensor.from_dlpack("y", obj)
    except pb_utils.TritonModelException as e:
        assert "cudaGetDevice" in str(e) or "cudaDeviceSynchronize" in str(e) or \
            "cuda-python" in str(e)
    else:  # a GPU machine: the tensor is the capsule's memory, not touched
        assert not t.is_cpu() and t._gpu.ptr == FAKE_GPU_PTR and t.shape() == [3]
    assert obj.streams == [1]  # ordered on the legacy default stream


def test_triton_words_for_strings_and_non_contiguous_tensors() -> None:
    s = pb_utils.Tensor("s", np.array([b"a"], dtype=object))
    with pytest.raises(pb_utils.TritonModelException) as e:
        s.to_dlpack()
    assert str(e.value) == "DLPack does not have support for string tensors."
    strided = np.arange(6, dtype=np.float32).reshape(2, 3).T
    with pytest.raises(pb_utils.TritonModelException) as e:
        pb_utils.Tensor.from_dlpack("t", strided.__dlpack__())
    assert str(e.value) == _gpu.NOT_CONTIGUOUS
    with pytest.raises(pb_utils.TritonModelException) as e:
        pb_utils.Tensor.from_dlpack("t", _gpu.make_capsule(FAKE_GPU_PTR, (2,), np.dtype("<f4"),
                                                           False, 7, 0, None))
    assert "DLPack device type 7 is not supported" in str(e.value)


def test_host_tensors_keep_their_dlpack_behaviour() -> None:
    a = np.arange(4, dtype=np.float32)
    t = pb_utils.Tensor.from_dlpack("a", a.__dlpack__())
    assert t.is_cpu() and t.__dlpack_device__() == (1, 0)
    np.testing.assert_array_equal(np.from_dlpack(t), a)
    np.testing.assert_array_equal(t._host_array(), a)


# -- a KIND_GPU python model fed from a CUDA region ----------------------------------------

MODEL = '''
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.kind = args["model_instance_kind"]

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            seen = {"kind": self.kind, "is_cpu": x.is_cpu(), "shape": x.shape()}
            y = x.as_numpy() * 2 if x.is_cpu() else np.zeros(x.shape(), np.float32)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", y.astype(np.float32)),
                 pb_utils.Tensor("SEEN", np.array([json.dumps(seen).encode()], dtype=object))]))
        return out
'''


def _config(force_cpu: str | None) -> str:
    params = ("" if force_cpu is None else
              f'parameters {{ key: "FORCE_CPU_ONLY_INPUT_TENSORS" value {{ string_value: '
              f'"{force_cpu}" }} }}\n')
    return ('backend: "python"\nmax_batch_size: 0\n'
            'input [{ name: "X" data_type: TYPE_FP32 dims: [2, 4] }]\n'
            'output [{ name: "Y" data_type: TYPE_FP32 dims: [2, 4] },\n'
            '        { name: "SEEN" data_type: TYPE_STRING dims: [1] }]\n'
            'instance_group [{ kind: KIND_GPU count: 1 }]\n' + params)


A = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def gpu_server(tmp_path):
    for name, force in (("host_inputs", None), ("gpu_inputs", "no")):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.py").write_text(MODEL)
        (tmp_path / name / "config.pbtxt").write_text(_config(force))
    server = make_server(tmp_path, allow_client_shm=True)
    server.manager.gpus = ONE_GPU
    cuda = HostCuda()
    with server:
        server.cuda_shm_registry.gpus = ONE_GPU
        server.cuda_shm_registry._runtime = cuda  # the server's CUDA boundary
        with serving_http(server) as url:
            client = httpclient.InferenceServerClient(url)
            h = cuda.allocate(A.nbytes)
            cuda.allocs[h][:] = A.tobytes()
            client.register_cuda_shared_memory("in", base64.b64encode(h), 0, A.nbytes)
            yield client, cuda


def _infer(client, model):
    x = httpclient.InferInput("X", [2, 4], "FP32")
    x.set_shared_memory("in", A.nbytes)
    return client.infer(model, [x])


def test_a_gpu_python_model_gets_host_inputs_by_default(gpu_server) -> None:
    client, cuda = gpu_server
    r = _infer(client, "host_inputs")
    np.testing.assert_array_equal(r.as_numpy("Y"), A * 2)
    assert json.loads(r.as_numpy("SEEN")[0]) == {"kind": "GPU", "is_cpu": True, "shape": [2, 4]}
    assert cuda.copies == {"device_to_host": 1}


def test_force_cpu_only_no_passes_the_region_by_its_handle(gpu_server) -> None:
    """The worker maps the client's handle itself (cudaIpcOpenMemHandle): without a GPU a
    CUDA runtime call on that path fails, with a clear error, and the server keeps serving."""
    client, cuda = gpu_server
    # a runtime call's own words (not, say, "cuda-python is not installed")
    with pytest.raises(InferenceServerException,
                       match=r"cuda(GetDevice|SetDevice|IpcOpenMemHandle): "):
        _infer(client, "gpu_inputs")
    assert not cuda.copies  # the server never copied it
    x = httpclient.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(A)  # a body input is host memory: served as usual
    r = client.infer("gpu_inputs", [x])
    np.testing.assert_array_equal(r.as_numpy("Y"), A * 2)
