"""GPU tensors in a python model on a real GPU: pb_utils DLPack with torch and CuPy tensors
on the GPU (the checks of Triton's L0_dlpack, single-GPU ones), a KIND_GPU model fed from a
client's CUDA region through the client's IPC handle (no host copy in the server; the
model's torch view is the mapped memory), a GPU output, and a GPU tensor as a BLS input.
Marked ``gpu``; skipped where torch sees no CUDA device. The model runs in the worker,
which imports torch (and CuPy when present) itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device visible to torch (needs an NVIDIA GPU and a CUDA "
                              "build of torch)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

SHAPE = (4, 64)
N = int(np.prod(SHAPE)) * 4
A = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)

MODEL = '''
import json
import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack


def dlpack_checks():
    """What Triton's L0_dlpack checks on one GPU; returns the names of those that failed."""
    failed = []
    for dt in (torch.float16, torch.float32, torch.float64, torch.int8, torch.int16,
               torch.int32, torch.int64, torch.uint8, torch.bool):
        src = torch.ones([100], dtype=dt, device="cuda")
        pb = pb_utils.Tensor.from_dlpack("t", to_dlpack(src))
        if pb.is_cpu() or not torch.equal(from_dlpack(pb.to_dlpack()), src):
            failed.append(f"capsule {dt}")
        pb = pb_utils.Tensor.from_dlpack("t", src)
        back = from_dlpack(pb)
        if not torch.equal(back, src) or back.data_ptr() != src.data_ptr():
            failed.append(f"object {dt}")
    src = torch.rand([100], dtype=torch.float16, device="cuda")
    pb = pb_utils.Tensor.from_dlpack("t", to_dlpack(src))
    if pb.__dlpack_device__() != src.__dlpack_device__():
        failed.append("dlpack_device")
    try:
        pb.as_numpy()
        failed.append("as_numpy")
    except pb_utils.TritonModelException as e:
        if str(e) != "Tensor is stored in GPU and cannot be converted to NumPy.":
            failed.append("as_numpy words")
    # work queued on another stream is finished once from_dlpack returns
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        m = torch.randn(2000, 2000, device="cuda")
        for _ in range(20):
            m = m @ m / 2000
        t = torch.zeros(4, device="cuda") + 2
    pb = pb_utils.Tensor.from_dlpack("t", t)
    if not s.query() or not torch.equal(from_dlpack(pb), torch.full((4,), 2.0, device="cuda")):
        failed.append("stream")
    try:
        import cupy as cp
    except ImportError:
        return failed
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        c = cp.zeros(4) + 2
    pb = pb_utils.Tensor.from_dlpack("t", c)
    if not stream.done or not cp.array_equal(cp.from_dlpack(pb), cp.full(4, 2.0)):
        failed.append("cupy")
    return failed


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            xt = from_dlpack(x.to_dlpack()) if not x.is_cpu() else torch.from_numpy(x.as_numpy())
            seen = {"is_cpu": x.is_cpu(), "device": str(xt.device),
                    "view_of_mapping": (not x.is_cpu()) and xt.data_ptr() == x._gpu.ptr,
                    "dlpack_failed": dlpack_checks()}
            y = (xt.cuda() * 2).contiguous()
            # a GPU tensor as a BLS input: the worker copies it down for the server
            bls = pb_utils.InferenceRequest(
                model_name="double_host", requested_output_names=["Y"],
                inputs=[pb_utils.Tensor.from_dlpack("X", y)]).exec()
            if bls.has_error():
                raise pb_utils.TritonModelException(bls.error().message())
            seen["bls"] = pb_utils.get_output_tensor_by_name(bls, "Y").as_numpy().tolist()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor.from_dlpack("Y", y),  # a GPU output
                 pb_utils.Tensor("SEEN", np.array([json.dumps(seen).encode()], dtype=object))]))
        return out
'''

DOUBLE_HOST = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)]) for r in requests]
'''


def _write(repo, name: str, code: str, extra: str, seen: bool) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(code)
    out = '        { name: "SEEN" data_type: TYPE_STRING dims: [1] }' if seen else ""
    (repo / name / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        f'input [{{ name: "X" data_type: TYPE_FP32 dims: [{SHAPE[0]}, {SHAPE[1]}] }}]\n'
        f'output [{{ name: "Y" data_type: TYPE_FP32 dims: [{SHAPE[0]}, {SHAPE[1]}] }}'
        f'{"," if seen else ""}\n{out}]\n' + extra)


def test_a_gpu_python_model_on_cuda_shared_memory_dlpack_and_bls(tmp_path) -> None:
    import tritonclient.http as httpclient
    from cuda_region_client import RegionClient
    from python_backend_helpers import make_server

    from live_server import serving_http
    from triton_core.memory.device_array import shared_runtime

    _write(tmp_path, "gpu_py", MODEL,
           'instance_group [{ kind: KIND_GPU count: 1 }]\n'
           'parameters { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value { string_value: "no" } }\n',
           seen=True)
    _write(tmp_path, "double_host", DOUBLE_HOST, "", seen=False)
    with make_server(tmp_path, allow_client_shm=True) as server, serving_http(server) as url, \
            RegionClient(N, 0) as owner:
        client = httpclient.InferenceServerClient(url)
        client.register_cuda_shared_memory("in", owner.hin, 0, N)
        client.register_cuda_shared_memory("out", owner.hout, 0, N)
        x = httpclient.InferInput("X", list(SHAPE), "FP32")
        x.set_shared_memory("in", N)
        y = httpclient.InferRequestedOutput("Y")
        y.set_shared_memory("out", N)
        seen_out = httpclient.InferRequestedOutput("SEEN")
        before = dict(shared_runtime().copies)
        r = client.infer("gpu_py", [x], outputs=[y, seen_out])
        after = dict(shared_runtime().copies)
        seen = json.loads(r.as_numpy("SEEN")[0])
        print("model saw", seen, "| server copies", before, "->", after)
        assert seen["is_cpu"] is False and seen["device"] == "cuda:0"
        assert seen["view_of_mapping"] is True
        assert seen["dlpack_failed"] == []
        assert np.array_equal(np.array(seen["bls"], np.float32), A * 4)
        np.testing.assert_array_equal(owner.read(np.float32, SHAPE), A * 2)
        # the input never went through the server's host memory
        assert after.get("device_to_host", 0) == before.get("device_to_host", 0)
        client.unregister_cuda_shared_memory()
