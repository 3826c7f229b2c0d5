"""Dynamic batching on a compute-bound model: our server under perf_analyzer vs onnxruntime alone.

    python bench/mlp/bench_mlp.py [--protocol grpc] [--concurrency 16] [--client-batch 1 8 16]
        [--ort-param session.intra_op.allow_spinning=0]

1. Builds bench/models_mlp/mlp (bench/mlp/build_mlp.py) when missing.
2. onnxruntime in this process, no server: samples/s at batch 1..64; the best
   is the physical limit of this machine for this model.
3. For each --client-batch B (default 1 8 16): starts `tritonserver
   --model-repository bench/models_mlp` (our server), runs perf_analyzer
   (`-b B --concurrency-range C:C`) and reads the model's statistics before
   and after: average batch size, and per request the queue time,
   gather/scatter (compute_input + compute_output) and the time the core
   spends on a request outside the backend's compute.
4. Prints samples/s, the ratio to the best direct batch and the overheads.

The machine is shared and its speed drifts: with --rounds N each server run is
measured N times, and each time onnxruntime alone is measured again at the best batch
right before and right after it; a run's ratio is against the mean of those two. The
median ratio over the rounds is the result.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Direct:
    """onnxruntime called directly, in this process, with its default session options."""

    def __init__(self, model: Path) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def samples_per_s(self, b: int, seconds: float) -> float:
        x = np.random.default_rng(b).standard_normal((b, 1024)).astype(np.float32)
        for _ in range(3):
            self.sess.run(None, {"INPUT": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.sess.run(None, {"INPUT": x})
            n += 1
        return n * b / (time.perf_counter() - t0)

    def sweep(self, seconds: float) -> dict[int, float]:
        return {b: self.samples_per_s(b, seconds) for b in (1, 2, 4, 8, 16, 32, 64)}


def batcher_overhead(n: int = 50000) -> dict[str, float]:
    """The dynamic batcher alone, in this process: microseconds per request to queue and batch."""
    from triton_core import InferenceRequest, Tensor
    from triton_core.config.io import parse_pbtxt
    from triton_core.scheduling.scheduler import make_scheduler

    cfg = parse_pbtxt((ROOT / "bench/models_mlp/mlp/config.pbtxt").read_text())
    x = Tensor.from_numpy("INPUT", np.zeros((1, 1024), np.float32))
    reqs = [InferenceRequest(model_name="mlp", inputs={"INPUT": x}) for _ in range(n)]
    out = {}
    for batch in (1, 16, 64):
        q = make_scheduler(cfg, 1)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            for r in reqs[i:i + batch]:
                q.put(r, 1)
            got = 0
            while got < min(batch, n - i):
                got += len(q.take())
        out[f"put_take_us_per_request_b{batch}"] = (time.perf_counter() - t0) / n * 1e6
    return out


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("our server exited during start-up")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/models/mlp/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("our server did not become ready")


def stats(url: str) -> dict:
    return get_json(f"http://{url}/v2/models/mlp/stats")["model_stats"][0]


def delta(a: dict, b: dict) -> dict:
    ia, ib = a["inference_stats"], b["inference_stats"]
    d = {k: (ib[k]["count"] - ia[k]["count"], ib[k]["ns"] - ia[k]["ns"]) for k in ib}
    d["inference_count"] = b["inference_count"] - a["inference_count"]
    d["execution_count"] = b["execution_count"] - a["execution_count"]
    return d


def serve_and_measure(a: argparse.Namespace, repo: Path, client_batch: int) -> dict:
    """Start our server on ``repo``, run perf_analyzer once, return its numbers and the stats."""
    http = f"127.0.0.1:{a.port}"
    grpc = f"127.0.0.1:{a.port + 1}"
    cmd = [a.server, "--model-repository", str(repo), "--http-port", str(a.port),
           "--grpc-port", str(a.port + 1), "--metrics-port", str(a.port + 2),
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"]
    if a.shared_memory:
        cmd += ["--allow-client-shm", "true"]
    log = open(ROOT / "bench/mlp/server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(http, proc)
        before = stats(http)
        pa = [a.perf_analyzer, "-m", "mlp", "-u", grpc if a.protocol == "grpc" else http,
              "-i", a.protocol, "-b", str(client_batch),
              "--concurrency-range", f"{a.concurrency}:{a.concurrency}",
              "-p", str(a.measurement_interval), "-s", "20", "-f", "/dev/stdout"]
        if a.shared_memory:
            pa += ["--shared-memory", "system", "--output-shared-memory-size",
                   str(4 * 1024 * client_batch)]
        print("$ " + " ".join(pa), flush=True)
        res = subprocess.run(pa, capture_output=True, text=True, timeout=600)
        after = stats(http)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    if res.returncode != 0:
        raise SystemExit(f"perf_analyzer failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    text = res.stdout[res.stdout.find("Concurrency,"):]
    row = list(csv.DictReader(io.StringIO(text)))[0]
    dd = delta(before, after)

    def avg(k: str) -> float:
        return dd[k][1] / max(1, dd[k][0]) / 1000

    return {
        "client_batch": client_batch,
        # perf_analyzer counts inferences: requests x their batch size
        "server_samples_per_s": float(row["Inferences/Second"]),
        "p99_us": float(row["p99 latency"]),
        "avg_batch": dd["inference_count"] / max(1, dd["execution_count"]),
        "requests_measured": dd["success"][0],
        "per_request_us": {"total_in_server": avg("success"), "queue": avg("queue"),
                           "compute_input": avg("compute_input"),
                           "compute_infer": avg("compute_infer"),
                           "compute_output": avg("compute_output"),
                           "outside_queue_and_compute":
                               avg("success") - avg("queue") - avg("compute_infer")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="http", choices=("grpc", "http"))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--client-batch", type=int, nargs="+", default=[1, 8, 16],
                    help="batch size of each perf_analyzer request (-b); one run per value")
    ap.add_argument("--ort-param", action="append", default=None, metavar="KEY=VALUE",
                    help="a model config parameter for the onnxruntime session, e.g. "
                         "session.intra_op.allow_spinning=0 (repeatable; default "
                         "intra_op_thread_count=1: with 2 instances, the fastest here)")
    ap.add_argument("--instances", type=int, default=2,
                    help="instance_group count (default 2, one per core)")
    ap.add_argument("--queue-delay-us", type=int, default=0,
                    help="dynamic_batching max_queue_delay_microseconds (default 0)")
    ap.add_argument("--shared-memory", action="store_true",
                    help="tensors through system shared memory (perf_analyzer --shared-memory system)")
    ap.add_argument("--port", type=int, default=8600)
    ap.add_argument("--seconds", type=float, default=3.0, help="per batch size, direct runs")
    ap.add_argument("--rounds", type=int, default=1,
                    help="server runs per client batch, each between two direct runs")
    ap.add_argument("--measurement-interval", type=int, default=5000)
    ap.add_argument("--perf-analyzer", default=os.environ.get(
        "PERF_ANALYZER", str(ROOT / "bench/.tools/bin/perf_analyzer")))
    ap.add_argument("--server", default="tritonserver", help="our server's command")
    a = ap.parse_args()
    if a.ort_param is None:
        a.ort_param = ["intra_op_thread_count=1"]

    repo = ROOT / "bench/models_mlp"
    onnx_file = repo / "mlp/1/model.onnx"
    if not onnx_file.exists():
        import build_mlp
        build_mlp.build(repo)
    config = repo / "mlp/config.pbtxt"
    base_config = config.read_text()
    params = "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
                     for k, v in (p.split("=", 1) for p in a.ort_param))

    direct = Direct(onnx_file)
    d = direct.sweep(a.seconds)
    best_b = max(d, key=d.get)
    print("onnxruntime direct (samples/s): " + ", ".join(f"b{b}={v:.0f}" for b, v in d.items()))
    runs = []
    try:
        config.write_text(base_config.replace("count: 1", f"count: {a.instances}").replace(
            "max_queue_delay_microseconds: 0",
            f"max_queue_delay_microseconds: {a.queue_delay_us}") + params)
        for cb in a.client_batch:
            for rnd in range(a.rounds):
                before = direct.samples_per_s(best_b, a.seconds)
                r = serve_and_measure(a, repo, cb)
                after = direct.samples_per_s(best_b, a.seconds)
                r["round"] = rnd + 1
                r["direct_before_after"] = [before, after]
                r["ratio"] = r["server_samples_per_s"] / ((before + after) / 2)
                runs.append(r)
                print(f"client batch {cb}, round {rnd + 1}: {r['server_samples_per_s']:.0f} "
                      f"samples/s, onnxruntime alone {before:.0f} before / {after:.0f} after, "
                      f"ratio {r['ratio']:.1%}, average batch {r['avg_batch']:.1f}", flush=True)
    finally:
        config.write_text(base_config)
    medians = {cb: statistics.median(r["ratio"] for r in runs if r["client_batch"] == cb)
               for cb in a.client_batch}
    report = {
        "protocol": a.protocol, "concurrency": a.concurrency, "instances": a.instances,
        "shared_memory": a.shared_memory, "queue_delay_us": a.queue_delay_us,
        "ort_params": a.ort_param,
        "direct_best_batch": best_b, "direct_best_samples_per_s": d[best_b],
        "direct_per_batch": d, "batcher_in_process": batcher_overhead(), "runs": runs,
        "median_ratio_by_client_batch": medians,
    }
    print(json.dumps(report, indent=1))
    print(f"\nonnxruntime alone: {d[best_b]:.0f} samples/s at batch {best_b} (sweep)")
    for r in runs:
        print(f"ours, {a.protocol} c{a.concurrency}, client batch {r['client_batch']}, round "
              f"{r['round']}: {r['server_samples_per_s']:.0f} samples/s = {r['ratio']:.1%} "
              f"(average batch {r['avg_batch']:.1f})")
    for cb, m in medians.items():
        print(f"client batch {cb}: median ratio over {a.rounds} round(s) {m:.1%}")
    out = ROOT / "bench/mlp/result.json"
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
