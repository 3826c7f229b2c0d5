"""Start-up cost: time to ready and memory after ready, ours beside the real Triton.

    python bench/startup_memory.py          # ours, Triton, ours, Triton, ..., ours (3 rounds)
    python bench/startup_memory.py --server "before=env PYTHONPATH=$OLD python -m triton_core.cli" \\
        --server "ours=python -m triton_core" --server triton=bench/.tools/bin/real-tritonserver

Each run starts a server on ``bench/models_ours`` (one python-backend model) on free
ports, polls ``/v2/health/ready`` every 5 ms, waits ``--settle`` seconds (1 s: the
eighth session's method), then reads every process of the server's tree from
/proc/PID/smaps_rollup:

- RSS: resident pages, shared libraries counted in full in each process (what ``ps``
  and ``top`` show; summed over the tree, a library mapped by two processes counts twice);
- PSS: each shared page divided among the processes that map it (sums to the memory
  the tree really takes; other processes of the machine mapping the same files, another
  python for one, lower it);
- USS: pages private to the process;
- CPU: user + system seconds the tree has used by then (start-up's cost, less sensitive
  to the machine's load than the time to ready).

Rounds alternate the servers so that each sees the same machine load; the first server
runs once more at the end, bracketing the others. Triton is
``bench/.tools/bin/real-tritonserver`` (bench/setup_tools.sh).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_REPO = BENCH_DIR / "models_ours"
DEFAULT_TRITON = BENCH_DIR / ".tools" / "bin" / "real-tritonserver"
MB = 1e6


@dataclass
class ProcMemory:
    pid: int
    name: str
    rss: int  # bytes
    pss: int
    uss: int
    cpu: float  # seconds of CPU (user + system) the process has used


@dataclass
class Sample:
    server: str
    ready_s: float
    procs: list[ProcMemory]

    def total(self, field: str) -> float:
        """MB, or seconds for ``cpu``."""
        return sum(getattr(p, field) for p in self.procs) / (1 if field == "cpu" else MB)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat's ppid)."""
    parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


def read_memory(pid: int) -> ProcMemory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * 1024
    name = Path(f"/proc/{pid}/comm").read_text().strip()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return ProcMemory(pid, name, fields["Rss"], fields["Pss"],
                      fields["Private_Clean"] + fields["Private_Dirty"], cpu)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.005)
    raise TimeoutError(f"not ready after {timeout} s: {url}")


# A user's server reads its modules' cached bytecode: a wheel install compiles it, an
# editable one writes it on the first start. PYTHONDONTWRITEBYTECODE=1 (set on some
# machines, these sandboxes among them) would compile every module of the core at every
# start instead: some 60-100 ms more.
_SERVER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_bytecode() -> None:
    """What pip does on install, for the packages installed in editable mode."""
    import compileall
    import importlib.util

    for name in ("triton_core", "triton_backend_python", "triton_python_backend_utils"):
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=1)


def run_once(server: str, argv: list[str], settle: float) -> Sample:
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = argv + ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=_SERVER_ENV)
    try:
        ready = wait_ready(proc, f"http://127.0.0.1:{http}/v2/health/ready", 60)
        time.sleep(settle)
        procs = [read_memory(p) for p in children(proc.pid)]
        return Sample(server, ready - start, procs)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def median(samples: list[Sample], field: str) -> float:
    return statistics.median(s.total(field) for s in samples)


def summary(samples: list[Sample]) -> str:
    per_proc = "  ".join(
        f"{p.name}: RSS {statistics.median(s.procs[i].rss for s in samples) / MB:.1f}"
        f" PSS {statistics.median(s.procs[i].pss for s in samples) / MB:.1f}"
        f" USS {statistics.median(s.procs[i].uss for s in samples) / MB:.1f}"
        for i, p in enumerate(samples[0].procs))
    ready = sorted(s.ready_s for s in samples)
    return (f"{samples[0].server:8s} n={len(samples)}  RSS {median(samples, 'rss'):6.1f} MB"
            f"  PSS {median(samples, 'pss'):6.1f} MB  USS {median(samples, 'uss'):6.1f} MB"
            f"  ready {statistics.median(ready):.2f} s ({ready[0]:.2f}-{ready[-1]:.2f})"
            f"  CPU {median(samples, 'cpu'):.2f} s\n    {per_proc}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    ap.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                    help="a server's command, without --model-repository and ports (repeatable; default:"
                         f" ours='{sys.executable} -m triton_core', triton='{DEFAULT_TRITON}')")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between ready and reading memory")
    args = ap.parse_args()

    specs = args.server or [f"ours={sys.executable} -m triton_core", f"triton={DEFAULT_TRITON}"]
    servers: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, cmd = spec.partition("=")
        if not sep or not cmd:
            ap.error(f"--server expects NAME=CMD, got '{spec}'")
        argv = shlex.split(cmd)
        if not Path(argv[0]).exists() and not shutil.which(argv[0]):
            print(f"{name}: no {argv[0]} (bench/setup_tools.sh installs Triton): left out", file=sys.stderr)
            continue
        servers[name] = argv + ["--model-repository", str(args.repo)]
    names = list(servers)
    compile_bytecode()
    # round after round of every server, then the first again: it brackets the others
    order = names * args.rounds + names[:1] * (len(names) > 1)
    results: dict[str, list[Sample]] = {n: [] for n in names}
    for name in order:
        s = run_once(name, servers[name], args.settle)
        results[name].append(s)
        procs = ", ".join(f"{p.name}({p.pid}) RSS {p.rss / MB:.1f} PSS {p.pss / MB:.1f}" for p in s.procs)
        print(f"{name:8s} ready {s.ready_s:.3f} s  RSS {s.total('rss'):.1f}  PSS {s.total('pss'):.1f} MB"
              f"  CPU {s.total('cpu'):.2f} s  [{procs}]", flush=True)
    print()
    for name in names:
        print(summary(results[name]))
    if "triton" in results:
        base = results["triton"]
        for name in names:
            if name != "triton":
                print(f"{name}/triton: RSS {median(results[name], 'rss') / median(base, 'rss'):.2f}x"
                      f"  PSS {median(results[name], 'pss') / median(base, 'pss'):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
