"""Plain KServe v2 JSON load (wrk, closed loop) against our server, the real Triton and MLServer.

Every server is started once and stays up; the runs alternate between them (the order
rotates each round), so slow phases of this shared machine fall on every server alike.
One wrk run: `wrk -t1 -cC -dDs --latency -s bench/json/add_json.lua URL`, two FP32 [1,16]
inputs as JSON arrays, the outputs answered as JSON. Servers and wrk run under `nice -n -15`
(as root; otherwise at the normal priority).

    python bench/json/json_bench.py                       # ours, Triton 2.51, MLServer 1.7
    python bench/json/json_bench.py --baseline-src /tmp/main-src   # and main's sources too
    python bench/json/json_bench.py --servers ours triton --rounds 5 --concurrency 1 4
    python bench/json/json_bench.py --servers ours triton --load binary   # binary tensors

Prints requests/s per server and concurrency (median and range over the rounds) and the
ratios ours/X computed within each round; writes everything to bench/results/json-<stamp>.json.
Standard library only (wrk from Debian's package: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LUA = {"json": ROOT / "bench/json/add_json.lua", "binary": ROOT / "bench/json/add_binary.lua"}
BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": [i * 0.5 for i in range(16)]},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": [1.0] * 16},
]}).encode()


@dataclass
class Server:
    label: str
    port: int
    infer_path: str  # the model's /infer path
    ready_path: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    proc: subprocess.Popen | None = None
    log: Path | None = None


def _nice() -> list[str]:
    return ["nice", "-n", "-15"] if os.geteuid() == 0 else []


def servers(args: argparse.Namespace) -> list[Server]:
    repo = str(ROOT / "bench/models_ours")
    out: dict[str, Server] = {}
    ours_cmd = [args.tritonserver, "--model-repository", repo]

    def ours(label: str, port: int, pythonpath: str | None) -> Server:
        env = {"PYTHONPATH": pythonpath} if pythonpath is not None else {}
        return Server(label, port, "/v2/models/add_py/infer", "/v2/models/add_py/ready",
                      [*ours_cmd, "--http-port", str(port), "--grpc-port", str(port + 1),
                       "--metrics-port", str(port + 2)], env)

    out["ours"] = ours("ours", args.base_port, None)
    if args.baseline_src:
        src = Path(args.baseline_src).resolve()
        out["main"] = ours("main", args.base_port + 10,
                           f"{src}/core:{src}/plugins/triton-backend-python")
    out["triton"] = Server(
        "triton", args.base_port + 20, "/v2/models/add_py/infer", "/v2/models/add_py/ready",
        [args.triton_binary, "--model-repository", repo, "--http-address", "127.0.0.1",
         "--http-port", str(args.base_port + 20), "--grpc-port", str(args.base_port + 21),
         "--metrics-port", str(args.base_port + 22)])
    mp = args.base_port + 30
    out["mlserver"] = Server(
        "mlserver", mp, "/v2/models/add/infer", "/v2/models/add/ready",
        [str(Path(args.mlserver_venv) / "bin/mlserver"), "start", "."],
        {"MLSERVER_HTTP_PORT": str(mp), "MLSERVER_GRPC_PORT": str(mp + 1),
         "MLSERVER_METRICS_PORT": str(mp + 2)}, cwd=ROOT / "bench/json/mlserver_add")
    wanted = args.servers or list(out)
    return [out[w] for w in wanted if w in out]


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def start(s: Server, results: Path) -> None:
    if _get(f"http://127.0.0.1:{s.port}/v2/health/live")[0]:
        sys.exit(f"port {s.port} already answers: another server is there ({s.label})")
    s.log = results / f"json-{s.label}.log"
    env = {**os.environ, **s.env}
    with open(s.log, "wb") as log:
        s.proc = subprocess.Popen([*_nice(), *s.cmd], cwd=s.cwd, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(s: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.proc is not None and s.proc.poll() is not None:
            sys.exit(f"{s.label} exited ({s.proc.returncode}); its log: {s.log}")
        if _get(f"http://127.0.0.1:{s.port}{s.ready_path}")[0] == 200:
            status, body = _get(f"http://127.0.0.1:{s.port}{s.infer_path}", BODY)
            if status != 200:
                sys.exit(f"{s.label} answered {status} to the JSON request: {body[:300]!r}")
            out = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
            if out["OUTPUT0"][:3] != [1.0, 1.5, 2.0]:
                sys.exit(f"{s.label} answered a wrong sum: {out}")
            return
        time.sleep(0.25)
    sys.exit(f"{s.label} not ready after {timeout} s; its log: {s.log}")


def stop(s: Server) -> None:
    if s.proc is None or s.proc.poll() is not None:
        return
    try:
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.proc.wait()
    except ProcessLookupError:
        pass


_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}
_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                continue
    return kids + [d for k in kids for d in _children(k)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (workers, stubs) so far."""
    ticks = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def _us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(s: Server, conc: int, seconds: float, wrk_bin: str, load: str = "json") -> dict:
    env = {**os.environ, "WRK_PATH": s.infer_path}
    cmd = [*_nice(), wrk_bin, "-t1", f"-c{conc}", f"-d{seconds:g}s", "--latency", "-s", str(LUA[load]),
           f"http://127.0.0.1:{s.port}"]
    assert s.proc is not None
    cpu0 = cpu_seconds(s.proc.pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(s.proc.pid) - cpu0
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errs.group(1) if errs else "", "p50_us": _us(lat.get("50", "")),
            "p99_us": _us(lat.get("99", "")),
            "server_cpu_us_per_request": cpu / n * 1e6 if n else float("nan"), "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", nargs="+", choices=["ours", "main", "triton", "mlserver"])
    ap.add_argument("--baseline-src", help="a tree of main's core/ and plugins/ served as 'main'")
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--base-port", type=int, default=8700)
    ap.add_argument("--tritonserver", default=shutil.which("tritonserver") or "tritonserver")
    ap.add_argument("--triton-binary", default=str(ROOT / "bench/.tools/bin/real-tritonserver"))
    ap.add_argument("--mlserver-venv", default=str(ROOT / "bench/.tools/mlserver-venv"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--load", choices=list(LUA), default="json",
                    help="binary: the same request with binary tensors (not MLServer's)")
    ap.add_argument("--output")
    args = ap.parse_args()
    results = ROOT / "bench/results"
    results.mkdir(parents=True, exist_ok=True)
    svs = [s for s in servers(args) if args.load == "json" or s.label != "mlserver"]
    runs: list[dict] = []
    try:
        for s in svs:
            start(s, results)
        for s in svs:
            wait_ready(s)
            wrk(s, 1, 1, args.wrk)  # warm-up: first requests, caches, the backends' workers
        for r in range(args.rounds):
            order = svs[r % len(svs):] + svs[:r % len(svs)]
            for c in args.concurrency:
                for s in order:
                    res = {"round": r, "server": s.label, "concurrency": c,
                           **wrk(s, c, args.seconds, args.wrk, args.load)}
                    runs.append(res)
                    print(f"round {r} c{c} {s.label:9s} {res['rps']:9.1f} req/s  p50 "
                          f"{res['p50_us']:7.0f} us  p99 {res['p99_us']:7.0f} us  server CPU "
                          f"{res['server_cpu_us_per_request']:5.0f} us/req  "
                          f"non-2xx {res['non_2xx']}  load {res['load']:.2f}", flush=True)
    finally:
        for s in svs:
            stop(s)
    labels = [s.label for s in svs]
    summary: dict = {}
    print("\nrequests/s, median [min-max] over rounds; ratios computed within each round")
    for c in args.concurrency:
        for lab in labels:
            v = [x["rps"] for x in runs if x["server"] == lab and x["concurrency"] == c]
            summary[f"{lab}_c{c}"] = v
            cpu = [x["server_cpu_us_per_request"] for x in runs
                   if x["server"] == lab and x["concurrency"] == c]
            summary[f"{lab}_c{c}_cpu_us"] = cpu
            print(f"c{c} {lab:9s} {statistics.median(v):9.1f} [{min(v):.0f}-{max(v):.0f}]   "
                  f"server CPU {statistics.median(cpu):.0f} us/request")
        for num in ("ours", "main"):
            for den in labels:
                if num == den or num not in labels or (num, den) == ("main", "ours"):
                    continue
                rs = [a["rps"] / b["rps"] for a in runs for b in runs
                      if a["server"] == num and b["server"] == den and a["round"] == b["round"]
                      and a["concurrency"] == c == b["concurrency"]]
                summary[f"{num}/{den}_c{c}"] = rs
                print(f"c{c} {num}/{den:9s} median {statistics.median(rs):.2f} "
                      f"[{min(rs):.2f}-{max(rs):.2f}]")
    out = Path(args.output or results / f"json-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary}, indent=1))
    print(f"\nwritten: {out}")
    return 1 if any(x["non_2xx"] for x in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
