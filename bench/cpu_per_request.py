"""CPU time per request, per thread, of a server under perf_analyzer (Linux /proc).

    python bench/cpu_per_request.py --model add_py --protocol grpc --concurrency 4 \
        [--batch 1] [--seconds 5] [--server "tritonserver --model-repository bench/models_ours"]

Starts the server (any command taking --http-port/--grpc-port/--metrics-port, so the
real Triton too), runs perf_analyzer at one concurrency, and over a window in the
middle of the run reads every thread's user and system CPU time from /proc and the
requests served from the metrics endpoint (nv_inference_request_success). Prints
microseconds of CPU per request for each server thread (by thread id and name), for
the server's child processes (python backend workers) and for perf_analyzer.

On a machine with few cores throughput is CPU time per request: this shows who
spends it. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[str, tuple[int, int]]:
    """'tid:name' -> (user, system) clock ticks, for every thread of pid."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[f"{task.name}:{name}"] = (int(fields[11]), int(fields[12]))
    return out


def descendants(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(p.name))
    return kids + [d for k in kids for d in descendants(k)]


def total(pids: list[int]) -> int:
    s = 0
    for p in pids:
        try:
            s += sum(u + k for u, k in thread_times(p).values())
        except OSError:
            pass
    return s


def served(metrics_port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    return sum(float(line.split()[-1]) for line in body.decode().splitlines()
               if line.startswith("nv_inference_request_success"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--protocol", default="http", choices=("http", "grpc"))
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--server", default=f"{sys.prefix}/bin/tritonserver --model-repository "
                                        f"{ROOT / 'bench/models_ours'}")
    ap.add_argument("--ports", type=int, nargs=3, default=[8000, 8001, 8002],
                    metavar=("HTTP", "GRPC", "METRICS"))
    ap.add_argument("--perf-analyzer", default=str(ROOT / "bench/.tools/bin/perf_analyzer"))
    ap.add_argument("--pa-arg", action="append", default=[],
                    help="one more perf_analyzer argument, e.g. --pa-arg=--shared-memory=system "
                         "(repeatable); the server gets --allow-client-shm=true with it")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more server argument (repeatable)")
    a = ap.parse_args()
    http, grpc, metrics = a.ports
    cmd = shlex.split(a.server) + [f"--http-port={http}", f"--grpc-port={grpc}",
                                   f"--metrics-port={metrics}", *a.server_arg]
    if any("shared-memory" in x for x in a.pa_arg):
        cmd.append("--allow-client-shm=true")
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    pa = None
    try:
        ready = f"http://127.0.0.1:{http}/v2/models/{a.model}/ready"
        for _ in range(200):
            try:
                urllib.request.urlopen(ready, timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        else:
            print(f"the server did not get '{a.model}' ready", file=sys.stderr)
            return 1
        port = grpc if a.protocol == "grpc" else http
        ms = int((a.seconds + 8) * 1000)
        pa = subprocess.Popen([a.perf_analyzer, "-m", a.model, "-u", f"127.0.0.1:{port}",
                               "-i", a.protocol, "-b", str(a.batch), "-p", str(ms),
                               "--concurrency-range", f"{a.concurrency}:{a.concurrency}",
                               *a.pa_arg],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4)  # past perf_analyzer's warm-up
        kids = descendants(srv.pid)
        t0, k0, p0, n0 = thread_times(srv.pid), total(kids), total([pa.pid]), served(metrics)
        w0 = time.monotonic()
        time.sleep(a.seconds)
        t1, k1, p1, n1 = thread_times(srv.pid), total(kids), total([pa.pid]), served(metrics)
        wall = time.monotonic() - w0
        n = n1 - n0
        if n <= 0:
            print("no requests served in the window", file=sys.stderr)
            return 1
        us = 1e6 / TICK / n
        print(f"{a.model} {a.protocol} c{a.concurrency} b{a.batch}: {n / wall:.0f} requests/s")
        rows = []
        for key, (u, k) in t1.items():
            u0, s0 = t0.get(key, (0, 0))
            if (u - u0) + (k - s0) > 0:
                rows.append((((u - u0) + (k - s0)) * us, (u - u0) * us, (k - s0) * us, key))
        for tot, u, k, key in sorted(rows, reverse=True):
            print(f"  server thread {key:32s} {tot:8.1f} us/request (user {u:.1f}, system {k:.1f})")
        print(f"  server child processes {'':24s} {(k1 - k0) * us:8.1f} us/request")
        print(f"  perf_analyzer {'':33s} {(p1 - p0) * us:8.1f} us/request")
        return 0
    finally:
        if pa is not None:
            pa.wait()
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
