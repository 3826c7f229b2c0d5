"""GPU benchmarks (an NVIDIA GPU machine; perf_analyzer is not needed):

1. ``cudashm``: a 16 MB FP32 tensor through an identity model, sent and returned in the
   request body vs through CUDA shared memory (tritonclient's cuda_shared_memory), over
   HTTP and gRPC; sequential requests, median and p90 latency. Two models: onnxruntime on a
   KIND_CPU instance (CUDA-region data copied to the host and back) and, where torch sees a
   GPU, pytorch on a KIND_GPU instance (read in place, written device to device).
2. ``instances``: the same model (four 2048x2048 layers on a [256, 2048] batch) on one
   KIND_GPU instance vs two KIND_CPU instances, 4 concurrent HTTP clients; requests per
   second. Two backends: python (torch inside model.py) and pytorch (TorchScript).
3. ``multigpu`` (two GPUs or more, issue #26): a compute-bound TorchScript model (an
   8192x8192 layer applied 16 times to a [128, 8192] activation, from a [128, 1024] input) with two
   instances on GPU 0 vs two instances on each of GPUs 0 and 1, 8 concurrent HTTP clients;
   requests per second, and each GPU's nv_gpu_utilization (gpu_uuid) read from /metrics
   mid-run.

It writes its model repositories under --work, starts ``tritonserver`` for each and
prints one JSON line per measurement. Usage::

    python bench/gpu_bench.py --work /tmp/gpub cudashm instances
    python bench/gpu_bench.py --work /tmp/gpub multigpu   # 2+ GPUs; NCCL's NVLink multicast
                                                          # stays off (nothing here uses NCCL)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HTTP, GRPC, METRICS = "127.0.0.1:18100", "127.0.0.1:18101", "127.0.0.1:18102"


def _identity_repo(repo: Path, elements: int) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "identity",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [elements])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    d = repo / "identity_fp32"
    (d / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "1" / "model.onnx"))
    (d / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {elements} ] }} ]\n'
        f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {elements} ] }} ]\n'
        'instance_group [ { kind: KIND_CPU count: 1 } ]\n')


def _torch_models(repo: Path, elements: int | None, mlp_kind: str | None, count: int = 1) -> None:
    """TorchScript models: ``identity_torch_gpu`` (KIND_GPU, ``elements`` FP32) and/or
    ``mlp`` (the python model's layers, on ``mlp_kind``)."""
    import torch

    class Identity(torch.nn.Module):
        def forward(self, INPUT0: torch.Tensor) -> torch.Tensor:  # noqa: N803
            return INPUT0.clone()

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.w = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(2048, 2048, generator=g) / 45, False)
                 for _ in range(4)])

        def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: N803
            y = X
            for w in self.w:
                y = torch.relu(y @ w)
            return y

    if elements is not None:
        d = repo / "identity_torch_gpu"
        (d / "1").mkdir(parents=True, exist_ok=True)
        torch.jit.script(Identity()).save(str(d / "1" / "model.pt"))
        (d / "config.pbtxt").write_text(
            'backend: "pytorch"\nmax_batch_size: 0\n'
            f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {elements} ] }} ]\n'
            f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {elements} ] }} ]\n'
            'instance_group [ { kind: KIND_GPU count: 1 } ]\n')
    if mlp_kind is not None:
        d = repo / "mlp"
        (d / "1").mkdir(parents=True, exist_ok=True)
        torch.jit.script(Mlp()).save(str(d / "1" / "model.pt"))
        (d / "config.pbtxt").write_text(
            'backend: "pytorch"\nmax_batch_size: 0\n'
            'input [ { name: "X" data_type: TYPE_FP32 dims: [ 256, 2048 ] } ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 256, 2048 ] } ]\n'
            f'instance_group [ {{ kind: {mlp_kind} count: {count} }} ]\n')


def _big_mlp_repo(repo: Path, gpus: list[int], count: int) -> None:
    """``big_mlp``: compute-bound (about 275 GFLOP a request), ``count`` instances on each
    GPU of ``gpus``."""
    import torch

    class BigMlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.up = torch.nn.Parameter(torch.randn(1024, 8192, generator=g) / 32, False)
            # one layer applied 16 times: the compute of 16 layers, the file of one
            self.w = torch.nn.Parameter(torch.randn(8192, 8192, generator=g) / 90.5, False)
            self.down = torch.nn.Parameter(torch.randn(8192, 1024, generator=g) / 90.5, False)

        def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: N803
            y = X @ self.up
            for _ in range(16):
                y = torch.relu(y @ self.w)
            return y @ self.down

    d = repo / "big_mlp"
    (d / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.script(BigMlp()).save(str(d / "1" / "model.pt"))
    (d / "config.pbtxt").write_text(
        'backend: "pytorch"\nmax_batch_size: 0\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 128, 1024 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 128, 1024 ] } ]\n'
        f'instance_group [ {{ kind: KIND_GPU count: {count} gpus: {gpus} }} ]\n')


def _gpu_utilization() -> dict[str, float]:
    """nv_gpu_utilization by gpu_uuid, from the server's /metrics."""
    import urllib.request

    text = urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("nv_gpu_utilization{"):
            uuid = line.split('gpu_uuid="', 1)[1].split('"', 1)[0]
            out[uuid] = float(line.rsplit(" ", 1)[1])
    return out


def bench_multigpu(work: Path, seconds: float, clients: int) -> None:
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        print(json.dumps({"bench": "multigpu", "skipped": f"{n} GPU(s): needs two"}), flush=True)
        return
    x = np.random.default_rng(0).random((128, 1024), dtype=np.float32)
    for gpus in ([0], [0, 1]):
        repo = work / f"repo_big_mlp_{len(gpus)}"
        _big_mlp_repo(repo, gpus, 2)
        with Served(repo, work / f"server_big_mlp_{len(gpus)}.log", metrics=True):
            done: list[float] = []
            lock = threading.Lock()
            stop_at = time.monotonic() + seconds + 2
            run = _client_loop(x, stop_at, seconds, done, lock, "big_mlp")
            ts = [threading.Thread(target=run) for _ in range(clients)]
            for t in ts:
                t.start()
            time.sleep(2 + seconds / 2)
            util = _gpu_utilization()
            for t in ts:
                t.join()
            _stats(f"big_mlp_gpus_{'_'.join(map(str, gpus))}_x2", done, clients=clients,
                   infer_per_s=round(len(done) / seconds, 2), nv_gpu_utilization=util)


def _torch_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


_MLP = '''
import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        g = torch.Generator().manual_seed(0)
        self.w = [(torch.randn(2048, 2048, generator=g) / 45).to(self.device) for _ in range(4)]

    def execute(self, requests):
        out = []
        for r in requests:
            x = torch.from_numpy(pb_utils.get_input_tensor_by_name(r, "X").as_numpy())
            y = x.to(self.device)
            for w in self.w:
                y = torch.relu(y @ w)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y.cpu().numpy())]))
        return out
'''


def _mlp_repo(repo: Path, kind: str, count: int) -> None:
    d = repo / "mlp"
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "1" / "model.py").write_text(_MLP)
    (d / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 256, 2048 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 256, 2048 ] } ]\n'
        f'instance_group [ {{ kind: {kind} count: {count} }} ]\n')


class Served:
    """tritonserver over ``repo`` until the block ends."""

    def __init__(self, repo: Path, log: Path, metrics: bool = False) -> None:
        self.repo, self.log, self.metrics = repo, log, metrics

    def __enter__(self) -> Served:
        import tritonclient.http as httpclient

        cmd = ["tritonserver", "--model-repository", str(self.repo), "--http-port", HTTP[-5:],
               "--grpc-port", GRPC[-5:], "--allow-metrics", str(self.metrics).lower(),
               "--metrics-port", METRICS[-5:], "--metrics-interval-ms", "500",
               "--allow-client-shm", "true", "--http-address", "127.0.0.1",
               "--grpc-address", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        client = httpclient.InferenceServerClient(HTTP)
        deadline = time.monotonic() + 180
        while True:
            try:
                if client.is_server_ready():
                    return self
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tritonserver did not become ready: see {self.log}")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


def _stats(name: str, times: list[float], **extra: object) -> None:
    times.sort()
    print(json.dumps({"bench": name, "n": len(times),
                      "median_ms": round(statistics.median(times) * 1e3, 3),
                      "p90_ms": round(times[math.ceil(len(times) * 0.9) - 1] * 1e3, 3), **extra}),
          flush=True)


def bench_cudashm(work: Path, mb: int, iters: int) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    import tritonclient.utils.cuda_shared_memory as cshm

    elements = mb * 1024 * 1024 // 4
    nbytes = elements * 4
    repo = work / "repo_identity"
    _identity_repo(repo, elements)
    models = ["identity_fp32"]
    if _torch_gpu():
        _torch_models(repo, elements, None)
        models.append("identity_torch_gpu")
    data = np.random.default_rng(0).random(elements, dtype=np.float32)
    with Served(repo, work / "server_identity.log"):
        for (proto, mod, url), model in ((p, m) for p in (("http", httpclient, HTTP),
                                                          ("grpc", grpcclient, GRPC))
                                         for m in models):
            if proto == "http":
                client = mod.InferenceServerClient(url, network_timeout=120.0)
                kw: dict = {}
            else:
                client = mod.InferenceServerClient(url)
                kw = {"client_timeout": 120.0}
            # the request body
            inp = mod.InferInput("INPUT0", [elements], "FP32")
            inp.set_data_from_numpy(data)
            out = mod.InferRequestedOutput("OUTPUT0") if proto == "grpc" else \
                mod.InferRequestedOutput("OUTPUT0", binary_data=True)
            times = []
            for i in range(iters + 2):
                t = time.perf_counter()
                r = client.infer(model, [inp], outputs=[out], **kw)
                got = r.as_numpy("OUTPUT0")
                if i >= 2:
                    times.append(time.perf_counter() - t)
            assert np.array_equal(got, data)
            _stats(f"{proto}_body_{mb}MB", times, model=model)
            # CUDA shared memory: the data already on the GPU, the result left there
            hin = cshm.create_shared_memory_region("bin", nbytes, 0)
            hout = cshm.create_shared_memory_region("bout", nbytes, 0)
            try:
                cshm.set_shared_memory_region(hin, [data])
                client.unregister_cuda_shared_memory()
                client.register_cuda_shared_memory("bin", cshm.get_raw_handle(hin), 0, nbytes)
                client.register_cuda_shared_memory("bout", cshm.get_raw_handle(hout), 0, nbytes)
                inp = mod.InferInput("INPUT0", [elements], "FP32")
                inp.set_shared_memory("bin", nbytes)
                out = mod.InferRequestedOutput("OUTPUT0")
                out.set_shared_memory("bout", nbytes)
                times = []
                for i in range(iters + 2):
                    t = time.perf_counter()
                    client.infer(model, [inp], outputs=[out], **kw)
                    if i >= 2:
                        times.append(time.perf_counter() - t)
                got = cshm.get_contents_as_numpy(hout, np.float32, [elements])
                assert np.array_equal(got, data)
                _stats(f"{proto}_cudashm_{mb}MB", times, model=model)
                client.unregister_cuda_shared_memory()
            finally:
                cshm.destroy_shared_memory_region(hin)
                cshm.destroy_shared_memory_region(hout)


def _client_loop(x: np.ndarray, stop_at: float, seconds: float, done: list[float],
                 lock: threading.Lock, model: str = "mlp"):
    import tritonclient.http as httpclient

    def run() -> None:
        c = httpclient.InferenceServerClient(HTTP, network_timeout=120.0)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        while (now := time.monotonic()) < stop_at:
            t = time.perf_counter()
            c.infer(model, [inp])
            if now > stop_at - seconds:  # the first 2 s warm up and are not counted
                with lock:
                    done.append(time.perf_counter() - t)

    return run


def bench_instances(work: Path, seconds: float, clients: int,
                    only: tuple[str, ...] = ("python", "pytorch")) -> None:

    x = np.random.default_rng(0).random((256, 2048), dtype=np.float32)
    backends = [b for b in ("python", "pytorch") if b in only
                and (b == "python" or _torch_gpu())]
    for backend, kind, count in ((b, k, c) for b in backends
                                 for k, c in (("KIND_GPU", 1), ("KIND_CPU", 2))):
        repo = work / f"repo_mlp_{backend}_{kind}"
        if backend == "python":
            _mlp_repo(repo, kind, count)
        else:
            _torch_models(repo, None, kind, count)
        with Served(repo, work / f"server_mlp_{backend}_{kind}.log"):
            done: list[float] = []
            lock = threading.Lock()
            stop_at = time.monotonic() + seconds + 2
            run = _client_loop(x, stop_at, seconds, done, lock)
            ts = [threading.Thread(target=run) for _ in range(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            _stats(f"mlp_{backend}_{kind}_x{count}", done, clients=clients,
                   infer_per_s=round(len(done) / seconds, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="+", choices=("cudashm", "instances", "multigpu"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--mb", type=int, default=16)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--backends", default="python,pytorch",
                    help="instances: the backends to measure (comma-separated)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if "cudashm" in a.which:
        bench_cudashm(a.work, a.mb, a.iters)
    if "instances" in a.which:
        bench_instances(a.work, a.seconds, a.clients, tuple(a.backends.split(",")))
    if "multigpu" in a.which:
        bench_multigpu(a.work, a.seconds, 2 * a.clients)


if __name__ == "__main__":
    sys.exit(main())
