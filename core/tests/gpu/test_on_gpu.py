"""The real GPU path: NVML, cuda-python and tritonclient's CUDA shared-memory utilities
against the server's HTTP and gRPC front ends. Marked ``gpu``; skipped, with the reason,
where NVML finds no NVIDIA GPU (CI has none). Run on a GPU machine with
``python -m pytest core/tests/gpu -v``."""

from __future__ import annotations

import numpy as np
import pytest

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import devices
from triton_core.errors import TritonError

GPUS = devices.gpus()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not GPUS, reason="no NVIDIA GPU found through NVML (needs nvidia-ml-py "
                                        "and an NVIDIA driver)"),
]


def _cshm():
    return pytest.importorskip("tritonclient.utils.cuda_shared_memory",
                               reason="needs cuda-python (pip install triton-core[cuda])")


def test_nvml_describes_every_gpu() -> None:
    for d in GPUS:
        assert d.uuid.startswith("GPU-")
        assert d.compute_capability >= (6, 0) and d.memory_total_bytes > 0
    assert [d.device_id for d in GPUS] == list(range(len(GPUS)))


def test_gpu_metrics_read_the_real_nvml() -> None:
    from triton_core.frontends.gpu_metrics import FAMILIES, GpuSampler

    s = GpuSampler(devices.SYSTEM)
    got = {m.name: m.samples for m in s.families()}
    assert {"nv_gpu_utilization", "nv_gpu_memory_total_bytes",
            "nv_gpu_memory_used_bytes"} <= set(got) <= set(FAMILIES)
    total = {x.labels["gpu_uuid"]: x.value for x in got["nv_gpu_memory_total_bytes"]}
    assert total == {d.uuid: float(d.memory_total_bytes) for d in GPUS}
    for name, samples in got.items():
        print(name, [(x.labels["gpu_uuid"], x.value) for x in samples])


def _serve(tmp_path, groups: str = ""):
    write_model(tmp_path, "add", ADD_SUB + groups)
    return make_server(tmp_path, allow_client_shm=True)


def test_kind_gpu_placement_on_the_real_gpus(tmp_path) -> None:
    with _serve(tmp_path, "instance_group [ { kind: KIND_GPU count: 2 } ]") as server:
        group = server.model_config_json("add")["instance_group"][0]
        assert group["kind"] == "KIND_GPU" and group["gpus"] == [d.device_id for d in GPUS]
        assert len(server.manager.get("add").instances) == 2 * len(GPUS)
    bad = len(GPUS)
    write_model(tmp_path, "bad", ADD_SUB + f"instance_group [ {{ kind: KIND_GPU gpus: [ {bad} ] }} ]")
    with make_server(tmp_path, model_control_mode="explicit") as server:
        with pytest.raises(TritonError) as e:
            server.load_model("bad")
        print(e.value.message)
        assert (f"specifies invalid or unsupported gpu id {bad}. GPUs with at least the minimum "
                "required CUDA compute compatibility of 6.000000 are: ") in e.value.message


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    """tritonserver in its own process: CUDA refuses to open an IPC handle in the process
    that made it, so the client (this test) and the server must be two processes."""
    import os
    import subprocess
    import sys

    import tritonclient.http as httpclient

    from triton_core.testing import free_port, wait_until

    repo = tmp_path_factory.mktemp("gpu_repo")
    d = repo / "add"
    (d / "1").mkdir(parents=True)
    # the example backend (docs/examples): installed, as a plugin must be for tritonserver
    (d / "config.pbtxt").write_text(ADD_SUB.replace('backend: "expr"', 'backend: "numpyexpr"'))
    (d / "1" / "model.expr").write_text("# the expressions are the config's parameters\n")
    http, grpc = free_port(), free_port()
    code = ("import sys; from triton_core.cli import tritonserver_main; "
            "sys.argv[0] = 'tritonserver'; tritonserver_main()")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--model-repository", str(repo), "--http-port", str(http),
         "--grpc-port", str(grpc), "--allow-metrics", "false", "--allow-client-shm", "true",
         "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"], env=dict(os.environ))
    try:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{http}")

        def ready() -> bool:
            assert proc.poll() is None, "tritonserver exited"
            try:
                return c.is_model_ready("add")
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        wait_until(ready, "tritonserver ready", 120)
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_tritonclient_cuda_shared_memory_round_trip(server_process, proto: str) -> None:
    cshm = _cshm()
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    mod = httpclient if proto == "http" else grpcclient
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 7, dtype=np.int32)
    n = a.nbytes
    client = mod.InferenceServerClient(server_process[proto])
    hin = cshm.create_shared_memory_region("in", 2 * n, 0)
    hout = cshm.create_shared_memory_region("out", 2 * n, 0)
    try:
        client.unregister_cuda_shared_memory()
        cshm.set_shared_memory_region(hin, [a, b])
        client.register_cuda_shared_memory("in", cshm.get_raw_handle(hin), 0, 2 * n)
        client.register_cuda_shared_memory("out", cshm.get_raw_handle(hout), 0, 2 * n)
        with pytest.raises(InferenceServerException, match="invalid args"):
            # more than the allocation behind the handle
            client.register_cuda_shared_memory("big", cshm.get_raw_handle(hin), 0, 1 << 30)
        i0, i1 = mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")
        i0.set_shared_memory("in", n)
        i1.set_shared_memory("in", n, offset=n)
        o0, o1 = mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")
        o0.set_shared_memory("out", n)
        o1.set_shared_memory("out", n, offset=n)
        client.infer("add", [i0, i1], outputs=[o0, o1])
        s = cshm.get_contents_as_numpy(hout, np.int32, [2, 16])
        assert (s[0] == (a + b)[0]).all() and (s[1] == (a - b)[0]).all()
        status = client.get_cuda_shared_memory_status()
        assert len(status if proto == "http" else status.regions) == 2
        client.unregister_cuda_shared_memory()
    finally:
        cshm.destroy_shared_memory_region(hin)
        cshm.destroy_shared_memory_region(hout)
