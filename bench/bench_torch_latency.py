"""Latency at concurrency 1: the pytorch backend against the onnxruntime backend serving the
same small network (same weights), in one server, under perf_analyzer.

    PATH=/work/main/.venv/bin:$PATH python bench/bench_torch_latency.py [--protocol grpc] [--rounds 3]

Builds bench/models_torch_latency/{small_torch,small_onnx}: an MLP 64 -> 256 -> 256 -> 16
(ReLU between), FP32, max_batch_size 0 (no batcher), one CPU instance each: the TorchScript
trace of a torch module and an ONNX graph holding the same weights. One server serves both;
each round measures torch then ONNX (alternating, so drift hits both), printing p50 / p99
latency and requests/s. Writes bench/bench_torch_latency_result.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (64, 256, 256, 16)


def build(repo: Path) -> None:
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(0)
    layers: list = []
    for i in range(len(SIZES) - 1):
        layers.append(torch.nn.Linear(SIZES[i], SIZES[i + 1]))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()
    io_cfg = (f'input [{{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1, {SIZES[0]} ] }}]\n'
              f'output [{{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1, {SIZES[-1]} ] }}]\n'
              'instance_group [{ kind: KIND_CPU count: 1 }]\n')

    folder = repo / "small_torch"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.trace(net, torch.zeros(1, SIZES[0])).save(str(folder / "1" / "model.pt"))
    (folder / "config.pbtxt").write_text('backend: "pytorch"\nmax_batch_size: 0\n'
                                         + io_cfg.replace('"OUTPUT"', '"OUTPUT__0"'))

    nodes, inits, prev = [], [], "INPUT"
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        w = lin.weight.detach().numpy().T.copy()
        b = lin.bias.detach().numpy().copy()
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(linears) - 1
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], ["OUTPUT" if last else f"add{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"add{i}"], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, [1, SIZES[0]])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, [1, SIZES[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = repo / "small_onnx"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "1" / "model.onnx"))
    (folder / "config.pbtxt").write_text('backend: "onnxruntime"\nmax_batch_size: 0\n' + io_cfg)


def wait_ready(url: str, proc: subprocess.Popen, models: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("our server exited during start-up")
        try:
            if all(urllib.request.urlopen(f"http://{url}/v2/models/{m}/ready", timeout=2).status == 200
                   for m in models):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("our server did not become ready")


def measure(a: argparse.Namespace, model: str, url: str) -> dict:
    pa = [a.perf_analyzer, "-m", model, "-u", url, "-i", a.protocol, "--concurrency-range", "1:1",
          "-p", str(a.measurement_interval), "-s", str(a.stability), "-f", "/dev/stdout"]
    res = subprocess.run(pa, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"perf_analyzer failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    row = list(csv.DictReader(io.StringIO(res.stdout[res.stdout.find("Concurrency,"):])))[0]
    return {"requests_per_s": float(row["Inferences/Second"]), "p50_us": float(row["p50 latency"]),
            "p99_us": float(row["p99 latency"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="http", choices=("grpc", "http"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--measurement-interval", type=int, default=3000)
    ap.add_argument("--stability", type=int, default=20)
    ap.add_argument("--port", type=int, default=8650)
    ap.add_argument("--perf-analyzer", default=os.environ.get(
        "PERF_ANALYZER", str(ROOT / "bench/.tools/bin/perf_analyzer")))
    ap.add_argument("--server", default="tritonserver", help="our server's command")
    a = ap.parse_args()

    repo = ROOT / "bench/models_torch_latency"
    build(repo)
    http, grpc = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    cmd = [a.server, "--model-repository", str(repo), "--http-port", str(a.port),
           "--grpc-port", str(a.port + 1), "--metrics-port", str(a.port + 2),
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"]
    (ROOT / "bench/results").mkdir(exist_ok=True)
    models = ["small_torch", "small_onnx"]
    results: dict[str, list[dict]] = {m: [] for m in models}
    with open(ROOT / "bench/results/bench_torch_latency_server.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(http, proc, models)
        for rnd in range(a.rounds):
            for m in models:
                r = measure(a, m, grpc if a.protocol == "grpc" else http)
                results[m].append(r)
                print(f"round {rnd + 1} {m}: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, "
                      f"{r['requests_per_s']:.0f} requests/s", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    summary = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
    (ROOT / "bench/bench_torch_latency_result.json").write_text(
        json.dumps({"protocol": a.protocol, "rounds": results, "median": summary}, indent=1))
    for m, s in summary.items():
        print(f"{m}: median p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us, "
              f"{s['requests_per_s']:.0f} requests/s ({a.protocol}, concurrency 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
