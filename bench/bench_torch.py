"""The pytorch backend under dynamic batching on a compute-bound model, against torch alone.

    PATH=/work/main/.venv/bin:$PATH python bench/bench_torch.py [--protocol grpc] \
        [--concurrency 16] [--instances 1] [--threads 0] [--rounds 3] [--direct-threads 1] \
        [--server "env PYTHONPATH=... tritonserver" tritonserver ...]

1. Builds bench/models_torch/mlp_torch: three 1024x1024 FP32 linear layers (ReLU between,
   the network of bench/mlp), traced to TorchScript, max_batch_size 64, dynamic batching,
   backend pytorch.
2. torch in this process, no server: samples/s at batch 1..64 under inference_mode, with
   one intra-op thread and with torch's default count; the best is this machine's limit.
3. Each round: torch alone at its best batch, then our server under perf_analyzer
   (--client-batch, default 1: the server forms every batch; --concurrency), then torch
   alone again; with several --server commands, each in turn with torch alone between
   them (A B A: before / after / before). A server run's ratio is its samples/s over the
   mean of the direct runs around it (the machine is shared and its speed drifts: see
   bench/README.md).
4. Where the time went (Linux /proc schedstat): each server thread's CPU per batch (the
   instance threads first, then the event loop), perf_analyzer's, and how long the instance
   threads waited, runnable, for a CPU, against the same for torch alone. The CPU ratio
   (torch alone's CPU per batch over the instance threads') is the throughput ratio the
   server would reach if each instance thread had a core to itself.
5. Prints the median ratios, the average batch the server formed and per-request times
   from the statistics extension; writes bench/bench_torch_result.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mlp_torch"
WIDTH = 1024
LAYERS = 3


def build(repo: Path, instances: int, threads: int, queue_delay_us: int, kind: str = "KIND_CPU"):
    """The traced MLP (deterministic weights, seed 0) and its config; returns the module."""
    import torch

    torch.manual_seed(0)
    layers: list = []
    for i in range(LAYERS):
        layers.append(torch.nn.Linear(WIDTH, WIDTH))
        if i < LAYERS - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()
    folder = repo / MODEL
    (folder / "1").mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(net, torch.zeros(1, WIDTH))
    traced.save(str(folder / "1" / "model.pt"))
    params = (f'parameters {{ key: "INTRA_OP_THREAD_COUNT" value {{ string_value: "{threads}" }} }}\n'
              if threads else "")
    (folder / "config.pbtxt").write_text(f"""backend: "pytorch"
max_batch_size: 64
input [{{ name: "input" data_type: TYPE_FP32 dims: [ {WIDTH} ] }}]
output [{{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {WIDTH} ] }}]
instance_group [{{ kind: {kind} count: {instances} }}]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
{params}""")
    return traced


class Direct:
    """The same TorchScript module called in this process, as a user would without a server:
    host input in, host output out (on a GPU: copied there and back, as the server does)."""

    def __init__(self, module, device: str = "cpu") -> None:
        self.device = device
        self.module = module.to(device)

    def samples_per_s(self, b: int, seconds: float) -> float:
        import torch

        x = torch.from_numpy(np.random.default_rng(b).standard_normal((b, WIDTH)).astype(np.float32))
        me = threading.get_native_id()
        with torch.inference_mode():
            for _ in range(3):
                self.module(x.to(self.device)).cpu()
            n, t0, s0 = 0, time.perf_counter(), thread_sched()[me]
            while time.perf_counter() - t0 < seconds:
                self.module(x.to(self.device)).cpu().numpy()  # a host result, as the server hands back
                n += 1
        s1 = thread_sched()[me]
        # this thread's ms on a CPU and ms waiting for one, per batch (the server's are compared)
        self.last_cpu_ms = ((s1[0] - s0[0]) / n / 1e6, (s1[1] - s0[1]) / n / 1e6)
        return n * b / (time.perf_counter() - t0)

    def sweep(self, seconds: float) -> dict[int, float]:
        return {b: self.samples_per_s(b, seconds) for b in (1, 2, 4, 8, 16, 32, 64)}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("our server exited during start-up (see bench/results/bench_torch_server.log)")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/models/{MODEL}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("our server did not become ready")


def thread_sched(pid: int | str = "self") -> dict[int, tuple[int, int]]:
    """Each thread of process ``pid``: (ns on a CPU, ns runnable but waiting for a CPU), from
    /proc/<pid>/task/<tid>/schedstat (Linux)."""
    out: dict[int, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu, waiting, _ = (task / "schedstat").read_text().split()
        except OSError:  # the thread ended
            continue
        out[int(task.name)] = (int(on_cpu), int(waiting))
    return out


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def model_stats(url: str) -> dict:
    return get_json(f"http://{url}/v2/models/{MODEL}/stats")["model_stats"][0]


def serve_and_measure(a: argparse.Namespace, repo: Path, client_batch: int, server: str) -> dict | None:
    http, grpc = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    cmd = [*shlex.split(server), "--model-repository", str(repo), "--http-port", str(a.port),
           "--grpc-port", str(a.port + 1), "--metrics-port", str(a.port + 2),
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"]
    if a.shared_memory:
        cmd += ["--allow-client-shm", "true"]
    logs = ROOT / "bench/results"
    logs.mkdir(exist_ok=True)
    with open(logs / "bench_torch_server.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(http, proc)
        before = model_stats(http)
        threads_before, client_before = thread_sched(proc.pid), children_cpu_s()
        pa = [a.perf_analyzer, "-m", MODEL, "-u", grpc if a.protocol == "grpc" else http,
              "-i", a.protocol, "-b", str(client_batch),
              "--concurrency-range", f"{a.concurrency}:{a.concurrency}",
              "-p", str(a.measurement_interval), "-s", str(a.stability), "-f", "/dev/stdout"]
        if a.shared_memory:
            pa += ["--shared-memory", "system", "--output-shared-memory-size", str(4 * WIDTH * client_batch)]
        print("$ " + " ".join(pa), flush=True)
        res = subprocess.run(pa, capture_output=True, text=True, timeout=600)
        client_cpu = children_cpu_s() - client_before  # perf_analyzer, the only child waited for
        threads_after = thread_sched(proc.pid)
        after = model_stats(http)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    if res.returncode != 0:  # on a loaded machine: no stable window; the round goes on
        print(f"perf_analyzer failed:\n{res.stdout[-600:]}\n{res.stderr[-600:]}", flush=True)
        return None
    row = list(csv.DictReader(io.StringIO(res.stdout[res.stdout.find("Concurrency,"):])))[0]
    ia, ib = before["inference_stats"], after["inference_stats"]
    d = {k: (ib[k]["count"] - ia[k]["count"], ib[k]["ns"] - ia[k]["ns"]) for k in ib}
    executions = after["execution_count"] - before["execution_count"]
    inferences = after["inference_count"] - before["inference_count"]

    def avg_us(k: str) -> float:
        return d[k][1] / max(1, d[k][0]) / 1000

    # where the CPU went, per batch executed: each server thread (the busiest first: the
    # instance threads, then the event loop) and the client; and how long the instance threads
    # (the busiest `instances` threads) waited, runnable, for a CPU
    deltas = sorted(((threads_after[t][0] - threads_before.get(t, (0, 0))[0],
                      threads_after[t][1] - threads_before.get(t, (0, 0))[1]) for t in threads_after),
                    reverse=True)
    batches = max(1, executions)
    per_batch_ms = [round(on / batches / 1e6, 3) for on, _ in deltas if on > 0]
    compute = deltas[:a.instances]

    return {
        "server_samples_per_s": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]), "p99_us": float(row["p99 latency"]),
        "avg_batch": inferences / max(1, executions),
        "cpu_ms_per_batch": {"server_threads": per_batch_ms[:6], "server_total": round(sum(per_batch_ms), 3),
                             "perf_analyzer": round(client_cpu / batches * 1000, 3),
                             "instance_threads": sum(on for on, _ in compute) / batches / 1e6,
                             "instance_threads_waiting_for_a_cpu":
                                 sum(w for _, w in compute) / batches / 1e6},
        "compute_infer_us_per_batch": d["compute_infer"][1] / max(1, executions) / 1000,
        "per_request_us": {k: avg_us(k) for k in ("success", "queue", "compute_input",
                                                   "compute_infer", "compute_output")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="http", choices=("grpc", "http"))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--client-batch", type=int, nargs="+", default=[1],
                    help="batch size of each perf_analyzer request (-b); 1: every batch is formed "
                         "by the server's dynamic batcher")
    ap.add_argument("--shared-memory", action="store_true",
                    help="tensors through system shared memory (perf_analyzer --shared-memory system)")
    ap.add_argument("--instances", type=int, default=1, help="instance_group count")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: KIND_GPU instances on GPU 0, and torch alone on cuda:0")
    ap.add_argument("--threads", type=int, default=0,
                    help="INTRA_OP_THREAD_COUNT of the model (0: torch's default)")
    ap.add_argument("--queue-delay-us", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="each direct measurement")
    ap.add_argument("--measurement-interval", type=int, default=5000)
    ap.add_argument("--stability", type=int, default=20,
                    help="perf_analyzer -s: the spread allowed between its windows (raise it on a "
                         "loaded machine)")
    ap.add_argument("--port", type=int, default=8640)
    ap.add_argument("--perf-analyzer", default=os.environ.get(
        "PERF_ANALYZER", str(ROOT / "bench/.tools/bin/perf_analyzer")))
    ap.add_argument("--server", nargs="+", default=["tritonserver"],
                    help="our server's command; several: each round measures each in turn, torch "
                         "alone between them (A B A: before / after / before)")
    ap.add_argument("--direct-threads", type=int, default=0,
                    help="torch alone with this many intra-op threads only (0: 1 and torch's "
                         "default, the best wins)")
    a = ap.parse_args()

    import torch

    repo = ROOT / "bench/models_torch"
    kind = "KIND_GPU" if a.device == "cuda" else "KIND_CPU"
    direct = Direct(build(repo, a.instances, a.threads, a.queue_delay_us, kind), a.device)
    # torch alone at its best: every batch size with one intra-op thread and with torch's
    # default count (on a loaded machine one thread can win: a preempted OpenMP thread
    # stalls the others at each barrier)
    sweeps: dict[int, dict[int, float]] = {}
    for n in [a.direct_threads] if a.direct_threads else sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(n)
        sweeps[n] = direct.sweep(a.seconds)
        print(f"torch {torch.__version__} alone, {n} thread(s) (samples/s): "
              + ", ".join(f"b{b}={v:.0f}" for b, v in sweeps[n].items()), flush=True)
    best_threads, best_b = max(((n, b) for n in sweeps for b in sweeps[n]), key=lambda k: sweeps[k[0]][k[1]])
    torch.set_num_threads(best_threads)
    print(f"torch alone at its best: batch {best_b}, {best_threads} thread(s)", flush=True)
    runs = []
    for cb in a.client_batch:
        for rnd in range(a.rounds):
            before = direct.samples_per_s(best_b, a.seconds)
            cpu_before = direct.last_cpu_ms
            for k, server in enumerate(a.server):
                r = serve_and_measure(a, repo, cb, server)
                after = direct.samples_per_s(best_b, a.seconds)
                cpu_after = direct.last_cpu_ms
                if r is None:
                    before, cpu_before = after, cpu_after
                    continue
                # torch alone's CPU per batch of the server's size (the bracketing runs, scaled)
                scale = r["avg_batch"] / best_b
                direct_cpu = (cpu_before[0] + cpu_after[0]) / 2 * scale
                r["direct_cpu_ms_per_batch"] = direct_cpu
                r["direct_waiting_ms_per_batch"] = (cpu_before[1] + cpu_after[1]) / 2 * scale
                # the throughput ratio if each instance thread had a CPU to itself
                r["cpu_ratio"] = direct_cpu / max(1e-9, r["cpu_ms_per_batch"]["instance_threads"])
                r.update(client_batch=cb, round=rnd + 1, server=server, server_index=k,
                         direct_before_after=[before, after],
                         ratio=r["server_samples_per_s"] / ((before + after) / 2))
                runs.append(r)
                label = f" [{k}] {server}" if len(a.server) > 1 else ""
                print(f"client batch {cb}, round {rnd + 1}{label}: ours {r['server_samples_per_s']:.0f} "
                      f"samples/s (average batch {r['avg_batch']:.1f}, p50 {r['p50_us']:.0f} us), torch "
                      f"alone at b{best_b} x{best_threads} {before:.0f} before / {after:.0f} after: "
                      f"ratio {r['ratio']:.1%}", flush=True)
                c = r["cpu_ms_per_batch"]
                print(f"  CPU ms per batch: server threads {c['server_threads']} (total "
                      f"{c['server_total']}), perf_analyzer {c['perf_analyzer']}; compute_infer "
                      f"{r['compute_infer_us_per_batch']:.0f} us per batch (wall); per request (us) "
                      + ", ".join(f"{k2} {v:.0f}" for k2, v in r["per_request_us"].items()), flush=True)
                print(f"  instance threads: {c['instance_threads']:.2f} ms on a CPU per batch (torch alone "
                      f"{r['direct_cpu_ms_per_batch']:.2f}: CPU ratio {r['cpu_ratio']:.1%}), "
                      f"{c['instance_threads_waiting_for_a_cpu']:.2f} ms waiting for a CPU (torch alone "
                      f"{r['direct_waiting_ms_per_batch']:.2f})", flush=True)
                before, cpu_before = after, cpu_after
    medians = {f"{cb}" + (f" [{k}]" if len(a.server) > 1 else ""):
               statistics.median([r["ratio"] for r in runs
                                  if r["client_batch"] == cb and r["server_index"] == k] or [0.0])
               for cb in a.client_batch for k in range(len(a.server))}
    report = {"device": a.device, "protocol": a.protocol, "concurrency": a.concurrency,
              "instances": a.instances, "servers": a.server,
              "server_threads": a.threads or "torch's default", "torch": torch.__version__,
              "direct_per_threads_and_batch": sweeps, "direct_best_batch": best_b,
              "direct_best_threads": best_threads, "runs": runs, "shared_memory": a.shared_memory,
              "median_ratio_by_client_batch": medians}
    (ROOT / "bench/bench_torch_result.json").write_text(json.dumps(report, indent=1))
    cpu_medians = {f"{cb}" + (f" [{k}]" if len(a.server) > 1 else ""):
                   statistics.median([r["cpu_ratio"] for r in runs
                                      if r["client_batch"] == cb and r["server_index"] == k] or [0.0])
                   for cb in a.client_batch for k in range(len(a.server))}
    report["median_cpu_ratio_by_client_batch"] = cpu_medians
    (ROOT / "bench/bench_torch_result.json").write_text(json.dumps(report, indent=1))
    for cb, m in medians.items():
        print(f"client batch {cb}: median ratio over {a.rounds} round(s) {m:.1%} of torch alone at "
              f"batch {best_b}, {best_threads} thread(s); CPU ratio {cpu_medians[cb]:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
