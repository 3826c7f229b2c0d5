"""A server and its python workers import what their configuration uses, and no more: with a
python-only repository, no grpcio, tritonclient client, onnxruntime or torch in the server,
and no triton_core (nor asyncio, for a synchronous model) in the worker."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from python_backend_helpers import build_repo, ready

from triton_core import devices
from triton_core.testing import free_port, wait_until

# The CLI in a fresh interpreter; once ready and its gRPC and metrics ports listen (they
# start after HTTP), it prints the names in its sys.modules.
_DRIVER = """
import json, socket, sys, threading, time, urllib.request
from triton_core.cli import serve

def answers(url, ports):
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=5) as r:
            if r.status != 200:
                return False
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False

def report():
    while not answers(sys.argv[1], [int(p) for p in sys.argv[2].split(",") if p]):
        time.sleep(0.01)
    print(json.dumps(sorted(sys.modules)), flush=True)

threading.Thread(target=report, daemon=True).start()
sys.exit(serve(sys.argv[3:]))
"""

# Not used by a python-only repository over HTTP, native gRPC and metrics
_UNUSED = ("grpc", "grpc_reflection", "tritonclient", "ml_dtypes", "onnxruntime", "onnx", "torch",
           "mlx", "coremltools", "opentelemetry", "fsspec", "ray", "cuda",
           "ijson", "tarfile")  # deep JSON bodies; conda-pack environments


def _top(names: list[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _worker_modules(url: str) -> list[str]:
    body = json.dumps({"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1], "data": [0.0]}]})
    req = urllib.request.Request(url + "/v2/models/worker_modules/infer", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())["outputs"][0]
    return list(out["data"])


@contextlib.contextmanager
def _serving(repo: Path, *flags: str, listening: tuple[int, ...] = ()) -> Iterator[tuple[str, list[str]]]:
    """The CLI on ``repo`` in a fresh interpreter: yields its HTTP URL and the modules it
    holds once ready and listening on the ``listening`` ports; stops it (exit status 0)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, url, ",".join(map(str, listening)),
         "--model-repository", str(repo), "--http-address", "127.0.0.1", "--http-port", str(port),
         *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: ready(url) or proc.poll() is not None, "the server to be ready", 120)
        assert proc.poll() is None, proc.stderr.read()
        yield url, json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_python_only_server_and_its_worker_import_only_what_they_use(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    grpc_port, metrics_port = free_port(), free_port()
    with _serving(repo, "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc_port),
                  "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port),
                  listening=(grpc_port, metrics_port)) as (url, server):
        worker = _worker_modules(url)

    # the server: its front ends and the python backend, no framework and no grpcio
    assert {"triton_core", "triton_backend_python", "numpy", "ngh2", "httptools",
            "prometheus_client"} <= _top(server)
    assert not _top(server) & set(_UNUSED), sorted(_top(server) & set(_UNUSED))
    if not devices.nvml_library_present():
        assert "pynvml" not in _top(server)
    # the worker: numpy and the model's utilities; no front end, no core, no event loop
    assert {"numpy", "triton_python_backend_utils"} <= _top(worker)
    assert not _top(worker) & {"triton_core", "triton_backend_python", "asyncio", "ssl", *_UNUSED}


def test_front_ends_turned_off_are_not_imported(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    with _serving(repo, "--allow-grpc", "false", "--allow-metrics", "false") as (_, server):
        pass
    assert "triton_core.frontends.http.app" in server
    assert not [m for m in server if m.startswith(("triton_core.frontends.grpc",
                                                     "triton_core.frontends.metrics"))]
    assert not _top(server) & {"ngh2", "prometheus_client", "psutil", *_UNUSED}


def test_the_worker_list_reads_its_own_process(tmp_path):
    """The model above answers its worker's modules, not the server's (which has triton_core)."""
    from python_backend_helpers import make_server

    from triton_core import InferenceRequest, Tensor

    repo = build_repo(tmp_path, ["worker_modules"])
    with make_server(repo) as s:
        x = np.zeros(1, np.float32)
        resp = s.infer(InferenceRequest("worker_modules", inputs={"IN": Tensor.from_numpy("IN", x)}))
        names = [n.decode() for n in resp.output("MODULES").as_numpy()]
    assert "triton_core" in sys.modules and "triton_core" not in names
    assert "triton_python_backend_utils._stub" in names


def test_a_model_of_coroutines_gets_its_event_loop(tmp_path, caplog):
    """The worker imports asyncio only when a model is async: then for initialize, execute
    and finalize alike (a failed finalize is logged at unload)."""
    from python_backend_helpers import make_server

    from triton_core import InferenceRequest, Tensor

    repo = build_repo(tmp_path, ["async_lifecycle"])
    with caplog.at_level("INFO"), make_server(repo) as s:
        x = np.array([2.0], np.float32)
        resp = s.infer(InferenceRequest("async_lifecycle", inputs={"IN": Tensor.from_numpy("IN", x)}))
        assert resp.output("OUT").as_numpy().tolist() == [3.0]
    assert "successfully unloaded 'async_lifecycle'" in caplog.text
    assert "finalize of" not in caplog.text


def test_a_conda_pack_archive_unpacks_once_and_goes_at_close(tmp_path):
    """EXECUTION_ENV_PATH's archives: tarfile is imported for them only."""
    import tarfile

    from triton_backend_python.backend import PythonBackend
    from triton_core.abi import BackendContext

    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python3").write_text("#!/bin/sh\n")
    archive = tmp_path / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(env / "bin", arcname="bin")
    backend = PythonBackend(BackendContext(name="python"))
    out = backend.unpack_env(archive)
    assert (out / "bin" / "python3").read_text() == "#!/bin/sh\n"
    assert backend.unpack_env(archive) == out  # once per archive
    backend.close()
    assert not out.exists()
