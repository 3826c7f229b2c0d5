"""Measure our server and, optionally, the real Triton with perf_analyzer.

Examples (run from the repository root; see bench/README.md):

    # our server, already listening on 8000 (HTTP) / 8001 (gRPC)
    python bench/perf.py --model simple --protocol http grpc --concurrency 1 4

    # start our server, then the real Triton on 9000/9001, same measurements
    python bench/perf.py --model add --triton-model add_py \\
        --ours-cmd "tritonserver --model-repository ./models --http-port 8000" \\
        --triton-repo bench/models --protocol http grpc --concurrency 1 4

Each measurement is one perf_analyzer run (``-p 5000 -s 20
--concurrency-range N:N -f CSV``). The table gives throughput (infer/s), p50
and p99 latency (us) for each server and the ratio ours/Triton; the JSON
results go to bench/results/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
TOOLS_BIN = BENCH_DIR / ".tools" / "bin"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_PERF_ANALYZER = TOOLS_BIN / "perf_analyzer"
DEFAULT_TRITON_BINARY = TOOLS_BIN / "real-tritonserver"

OURS = "ours"
TRITON = "triton"


@dataclass
class Endpoint:
    """Where one server listens."""

    role: str  # OURS or TRITON
    http: str  # host:port
    grpc: str  # host:port
    model: str

    def url(self, protocol: str) -> str:
        return self.http if protocol == "http" else self.grpc


@dataclass
class Measurement:
    """One perf_analyzer run."""

    server: str
    model: str
    protocol: str
    concurrency: int
    ok: bool
    throughput: float | None = None  # infer/s
    p50_us: float | None = None
    p90_us: float | None = None
    p95_us: float | None = None
    p99_us: float | None = None
    avg_us: float | None = None
    csv: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    attempts: int = 1
    load_avg: list[float] = field(default_factory=list)  # 1/5/15 min, before the run
    foreign_perf_analyzers: list[int] = field(default_factory=list)  # pids seen before
    error: str | None = None
    output_tail: str | None = None


def strip_scheme(url: str) -> str:
    for prefix in ("http://", "https://", "grpc://"):
        url = url.removeprefix(prefix)
    return url.rstrip("/")


def log(msg: str) -> None:
    print(f"[perf] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- servers


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def port_in_use(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """A server started from a shell command, in its own process group."""

    def __init__(self, name: str, command: str, log_path: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        log(f"starting {self.name}: {self.command}  (log: {self.log_path})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command,
            shell=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM the whole process group; wait until every member is gone.

        The shell may exit long before the server does (tritonserver waits up
        to 30 s for in-flight work), so waiting for the shell alone would leave
        the ports taken for the next server.
        """
        if self.proc is None:
            return
        pgid = self.proc.pid
        log(f"stopping {self.name} (process group {pgid})")
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            log(f"{self.name} did not exit in {timeout:.0f}s: SIGKILL")
            _signal_group(pgid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: pid {pgid} is still there after SIGKILL")
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """True while a process (zombies aside) of the group is alive."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # fields after "(comm)": state, ppid, pgrp, ...
            if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_ready(ep: Endpoint, server: ServerProcess | None, timeout: float) -> None:
    """Wait until GET /v2/health/ready and the model's ready endpoint answer 200."""
    base = f"http://{ep.http}"
    urls = [f"{base}/v2/health/ready", f"{base}/v2/models/{ep.model}/ready"]
    deadline = time.monotonic() + timeout
    log(f"waiting up to {timeout:.0f}s for {ep.role}: {urls[0]}, {urls[1]}")
    while True:
        codes = [http_status(u) for u in urls]
        if all(c == 200 for c in codes):
            log(f"{ep.role} ready at {base} (model {ep.model})")
            return
        if server is not None and not server.alive():
            raise RuntimeError(
                f"{ep.role} exited before becoming ready; log tail:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = server.log_tail() if server is not None else ""
            raise RuntimeError(
                f"{ep.role} not ready after {timeout:.0f}s ({urls} -> {codes})\n{tail}"
            )
        time.sleep(0.25)


def triton_command(args: argparse.Namespace) -> str:
    http, grpc = args.triton_http_port, args.triton_grpc_port
    parts = [
        str(args.triton_binary),
        "--model-repository",
        str(Path(args.triton_repo).resolve()),
        "--http-address",
        "127.0.0.1",
        "--grpc-address",
        "127.0.0.1",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
        str(args.triton_metrics_port),
        "--allow-metrics",
        "false",
        *shlex.split(args.triton_args),
    ]
    return shlex.join(parts)


# --------------------------------------------------------------------------- perf_analyzer


def _float(row: dict[str, str], key: str) -> float | None:
    value = row.get(key)
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def run_perf_analyzer(
    args: argparse.Namespace, ep: Endpoint, protocol: str, concurrency: int
) -> Measurement:
    fd, csv_name = tempfile.mkstemp(prefix="pa-", suffix=".csv")
    os.close(fd)
    csv_path = Path(csv_name)
    cmd = [
        str(args.perf_analyzer),
        "-m",
        ep.model,
        "-u",
        ep.url(protocol),
        "-i",
        protocol,
        "-p",
        str(args.measurement_interval),
        "-s",
        str(args.stability),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "-f",
        str(csv_path),
        *shlex.split(args.pa_args),
    ]
    m = Measurement(
        server=ep.role,
        model=ep.model,
        protocol=protocol,
        concurrency=concurrency,
        ok=False,
        command=cmd,
    )
    log(f"{ep.role}: {ep.model} {protocol} c={concurrency}: {shlex.join(cmd)}")
    m.load_avg = [round(x, 2) for x in os.getloadavg()]
    m.foreign_perf_analyzers = foreign_perf_analyzers()
    if m.foreign_perf_analyzers:
        log(
            f"  WARNING: other perf_analyzer processes are running "
            f"(pids {m.foreign_perf_analyzers}, load {m.load_avg}): numbers will be disturbed"
        )
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.pa_timeout, check=False
        )
        m.wall_s = round(time.monotonic() - t0, 1)
        rows: list[dict[str, str]] = []
        if csv_path.exists() and csv_path.stat().st_size:
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
        if proc.returncode != 0 or not rows:
            out = (proc.stdout + proc.stderr).strip().splitlines()
            m.output_tail = "\n".join(out[-20:])
            m.error = f"rc={proc.returncode}: {_summary(out)}"
            log(f"  FAILED {m.error}")
            return m
    except subprocess.TimeoutExpired:
        m.wall_s = round(time.monotonic() - t0, 1)
        m.error = f"timeout after {args.pa_timeout}s"
        log(f"  FAILED {m.error}")
        return m
    finally:
        csv_path.unlink(missing_ok=True)

    row = rows[-1]
    m.ok = True
    m.csv = row
    m.throughput = _float(row, "Inferences/Second")
    m.p50_us = _float(row, "p50 latency")
    m.p90_us = _float(row, "p90 latency")
    m.p95_us = _float(row, "p95 latency")
    m.p99_us = _float(row, "p99 latency")
    # Average client latency = the sum of perf_analyzer's component columns.
    parts = [
        "Client Send",
        "Network+Server Send/Recv",
        "Server Queue",
        "Server Compute Input",
        "Server Compute Infer",
        "Server Compute Output",
        "Client Recv",
    ]
    values = [_float(row, p) for p in parts]
    if all(v is not None for v in values):
        m.avg_us = float(sum(v for v in values if v is not None))
    log(f"  {m.throughput} infer/s, p50 {m.p50_us} us, p99 {m.p99_us} us ({m.wall_s}s)")
    return m


def measure(args: argparse.Namespace, ep: Endpoint) -> list[Measurement]:
    results: list[Measurement] = []
    for protocol in args.protocol:
        for c in args.concurrency:
            for attempt in range(1, args.retries + 2):
                m = run_perf_analyzer(args, ep, protocol, c)
                m.attempts = attempt
                if m.ok:
                    break
                if attempt <= args.retries:
                    log(f"  retrying ({attempt}/{args.retries})")
            results.append(m)
    return results


def _summary(lines: list[str]) -> str:
    """The line of perf_analyzer's output that says what went wrong."""
    for line in reversed(lines):
        low = line.lower()
        if "fail" in low or "error" in low or "unable" in low:
            return line.strip()
    return lines[-1].strip() if lines else "no output"


def foreign_perf_analyzers() -> list[int]:
    """Pids of perf_analyzer processes running now (none of ours is, between runs)."""
    pids: list[int] = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "perf_analyzer":
                pids.append(int(comm.parent.name))
        except (OSError, ValueError):
            continue
    return sorted(pids)


def measure_server(
    args: argparse.Namespace, ep: Endpoint, command: str | None, stamp: str
) -> list[Measurement]:
    """Optionally start a server, wait for it, measure it, stop it."""
    server: ServerProcess | None = None
    if command:
        for hostport in (ep.http, ep.grpc):
            if port_in_use(hostport):
                raise RuntimeError(
                    f"{hostport} is already in use: cannot start {ep.role} there"
                )
        server = ServerProcess(ep.role, command, RESULTS_DIR / f"{stamp}-{ep.role}.log")
        server.start()
    try:
        wait_ready(ep, server, args.ready_timeout)
        return measure(args, ep)
    finally:
        if server is not None:
            server.stop()


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def format_table(results: list[Measurement], servers: list[str]) -> str:
    by_key: dict[tuple[str, int, str], Measurement] = {
        (m.protocol, m.concurrency, m.server): m for m in results
    }
    keys = list(dict.fromkeys((m.protocol, m.concurrency) for m in results))
    header = ["protocol", "conc"]
    for s in servers:
        header += [f"{s} infer/s", f"{s} p50 us", f"{s} p99 us"]
    both = OURS in servers and TRITON in servers
    if both:
        header += ["thr ours/triton", "p50 ours/triton", "p99 ours/triton"]
    rows: list[list[str]] = []
    for protocol, conc in keys:
        row = [protocol, str(conc)]
        for s in servers:
            m = by_key.get((protocol, conc, s))
            if m is None or not m.ok:
                row += ["FAILED" if m is not None else "-", "-", "-"]
            else:
                row += [_fmt(m.throughput, 1), _fmt(m.p50_us), _fmt(m.p99_us)]
        if both:
            o, t = (
                by_key.get((protocol, conc, OURS)),
                by_key.get((protocol, conc, TRITON)),
            )
            ot = o.throughput if o else None
            tt = t.throughput if t else None
            row += [
                _ratio(ot, tt),
                _ratio(o.p50_us if o else None, t.p50_us if t else None),
                _ratio(o.p99_us if o else None, t.p99_us if t else None),
            ]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def pa_version(perf_analyzer: Path) -> str:
    try:
        out = subprocess.run(
            [str(perf_analyzer), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="model name on our server")
    p.add_argument("--protocol", nargs="+", choices=["http", "grpc"], default=["http"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1])
    g = p.add_argument_group("our server")
    g.add_argument("--url", default="localhost:8000", help="our HTTP host:port")
    g.add_argument(
        "--grpc-url", default=None, help="our gRPC host:port (default: port 8001)"
    )
    g.add_argument(
        "--ours-cmd",
        default=None,
        help="shell command that starts our server (stopped after the run); "
        "without it the server must already listen at --url/--grpc-url",
    )
    g.add_argument(
        "--skip-ours", action="store_true", help="measure the real Triton only"
    )
    g = p.add_argument_group("the real Triton (measured when --triton-repo is given)")
    g.add_argument(
        "--triton-repo", default=None, help="model repository for the real Triton"
    )
    g.add_argument("--triton-binary", type=Path, default=DEFAULT_TRITON_BINARY)
    g.add_argument(
        "--triton-model", default=None, help="model name on Triton (default --model)"
    )
    g.add_argument("--triton-http-port", type=int, default=9000)
    g.add_argument("--triton-grpc-port", type=int, default=9001)
    g.add_argument("--triton-metrics-port", type=int, default=9002)
    g.add_argument("--triton-args", default="", help="extra tritonserver arguments")
    g = p.add_argument_group("perf_analyzer")
    g.add_argument("--perf-analyzer", type=Path, default=DEFAULT_PERF_ANALYZER)
    g.add_argument("--measurement-interval", type=int, default=5000, help="-p, ms")
    g.add_argument("--stability", type=int, default=20, help="-s, percent")
    g.add_argument("--pa-args", default="", help="extra perf_analyzer arguments")
    g.add_argument("--pa-timeout", type=float, default=300.0, help="seconds per run")
    g.add_argument(
        "--retries",
        type=int,
        default=1,
        help="reruns of a failed (e.g. unstable) measurement",
    )
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument(
        "--output", type=Path, default=None, help="JSON path (default bench/results/)"
    )
    args = p.parse_args(argv)
    if args.skip_ours and not args.triton_repo:
        p.error("--skip-ours needs --triton-repo")
    if any(c < 1 for c in args.concurrency):
        p.error("--concurrency values must be >= 1")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM / SIGHUP unwind like Ctrl-C, so a server we started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    if not Path(args.perf_analyzer).exists():
        log(f"{args.perf_analyzer} not found: run bench/setup_tools.sh first")
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)

    http = strip_scheme(args.url)
    host = http.rpartition(":")[0] or "localhost"
    grpc = strip_scheme(args.grpc_url) if args.grpc_url else f"{host}:8001"
    ours = Endpoint(OURS, http, grpc, args.model)
    triton = Endpoint(
        TRITON,
        f"127.0.0.1:{args.triton_http_port}",
        f"127.0.0.1:{args.triton_grpc_port}",
        args.triton_model or args.model,
    )

    servers: list[str] = []
    results: list[Measurement] = []
    errors: list[str] = []
    plan: list[tuple[Endpoint, str | None]] = []
    if not args.skip_ours:
        plan.append((ours, args.ours_cmd))
    if args.triton_repo:
        if not Path(args.triton_binary).exists():
            log(f"{args.triton_binary} not found: run bench/setup_tools.sh first")
            return 2
        plan.append((triton, triton_command(args)))
    for ep, command in plan:
        servers.append(ep.role)
        try:
            results += measure_server(args, ep, command, stamp)
        except RuntimeError as exc:
            log(f"{ep.role}: {exc}")
            errors.append(f"{ep.role}: {exc}")
        except KeyboardInterrupt:
            errors.append(f"{ep.role}: interrupted")
            break

    table = format_table(results, servers)
    names = ", ".join(
        f"{ep.role}={ep.model}" for ep in (ours, triton) if ep.role in servers
    )
    print(f"\nmodel: {names}  ({pa_version(args.perf_analyzer)})")
    print(table)
    for err in errors:
        print(f"ERROR {err.splitlines()[0]}")
    for m in results:
        if not m.ok:
            first = m.error.splitlines()[0] if m.error else ""
            print(f"FAILED {m.server} {m.protocol} c={m.concurrency}: {first}")

    out = args.output or RESULTS_DIR / f"perf-{stamp}.json"
    payload: dict[str, Any] = {
        "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "perf_analyzer": pa_version(args.perf_analyzer),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "endpoints": {OURS: asdict(ours), TRITON: asdict(triton)},
        "triton_command": triton_command(args) if args.triton_repo else None,
        "results": [asdict(m) for m in results],
        "errors": errors,
        "table": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nresults: {out}")
    failed = errors or any(not m.ok for m in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
