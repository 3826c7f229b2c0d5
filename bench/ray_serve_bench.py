"""Throughput through Ray Serve's proxies (1 and 2 replicas) against our own front ends.

    python bench/ray_serve_bench.py [--perf-analyzer bench/.tools/bin/perf_analyzer]

Needs ray[serve] (pip install './core[ray]') and the numpyexpr example backend installed
(its entry point is how each replica finds it). The model is the tutorial's `add`
(FP32 [4] + [4], batch 1). Each setup is measured by perf_analyzer over HTTP and gRPC
at concurrency 1 and 8 (-p 3000 -s 20). On a machine with few cores the client, Ray's
proxy and the replicas share them: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tritonclient.http as httpclient

from triton_core.testing import free_port

BENCH = Path(__file__).resolve().parent
CONFIG = """
backend: "numpyexpr"
max_batch_size: 8
input [{ name: "A" data_type: TYPE_FP32 dims: [4] }, { name: "B" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [4] }]
parameters { key: "SUM" value { string_value: "A + B" } }
"""


def write_repo(root: Path) -> Path:
    (root / "add" / "1").mkdir(parents=True)
    (root / "add" / "config.pbtxt").write_text(CONFIG)
    (root / "add" / "1" / "model.expr").write_text("# in config.pbtxt\n")
    return root


def wait_ready(url: str, timeout: float = 180) -> None:
    client = httpclient.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.is_model_ready("add"):
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def measure(pa: str, url: str, concurrency: int, protocol: str = "http") -> float:
    out = subprocess.run([pa, "-m", "add", "-u", url, "-i", protocol, "-p", "3000", "-s", "20",
                          "--concurrency-range", f"{concurrency}:{concurrency}"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"Throughput: ([0-9.]+) infer/sec", out)[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--perf-analyzer", default=str(BENCH / ".tools" / "bin" / "perf_analyzer"))
    a = p.parse_args()
    repo = write_repo(Path(tempfile.mkdtemp(prefix="ray-bench-")))
    results: dict[str, dict[int, float]] = {}

    port, grpc_port = free_port(), free_port()
    ours = subprocess.Popen([sys.executable, "-c", "from triton_core.cli import tritonserver_main; "
                             "tritonserver_main()", "--model-repository", str(repo), "--http-port",
                             str(port), "--grpc-port", str(grpc_port), "--metrics-port",
                             str(free_port()), "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"127.0.0.1:{port}")
        results["our front end, HTTP"] = {c: measure(a.perf_analyzer, f"127.0.0.1:{port}", c) for c in (1, 8)}
        results["our front end, gRPC"] = {
            c: measure(a.perf_analyzer, f"127.0.0.1:{grpc_port}", c, "grpc") for c in (1, 8)}
    finally:
        ours.terminate()
        ours.wait()

    import ray
    from ray import serve

    from triton_core.frontends.ray_serve import GRPC_SERVICER_FUNCTION, triton_app

    ray.init(include_dashboard=False, log_to_driver=False)
    port, grpc_port = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                grpc_options={"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER_FUNCTION]})
    try:
        for replicas in (1, 2):
            serve.run(triton_app(replicas, num_cpus=0.5, model_repository=[repo]), name="triton",
                      route_prefix="/")
            wait_ready(f"127.0.0.1:{port}")
            results[f"Ray Serve, {replicas} replica(s), HTTP"] = {
                c: measure(a.perf_analyzer, f"127.0.0.1:{port}", c) for c in (1, 8)}
            results[f"Ray Serve, {replicas} replica(s), gRPC"] = {
                c: measure(a.perf_analyzer, f"127.0.0.1:{grpc_port}", c, "grpc") for c in (1, 8)}
            serve.delete("triton")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(results, indent=1))
    for name, by_c in results.items():
        print(f"{name:34s} c=1 {by_c[1]:8.1f} infer/s   c=8 {by_c[8]:8.1f} infer/s")


if __name__ == "__main__":
    main()
