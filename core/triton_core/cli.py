"""Command line: `tritonserver` (Triton's flags) and `triton serve | backends | check`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__, prestart
from .errors import TritonError
from .frontends.header_forward import HeaderForward
from .frontends.restricted import parse_rules
from .install_hint import pip_install
from .logsettings import LOGGER
from .options import ServerOptions
from .scheduling.metrics_config import MetricsConfig, parse_flags
from .scheduling.rate_limiter import parse_resource_flag
from .scheduling.trace import parse_trace_flags
from .server import Server
from .version_report import VersionAction

log = LOGGER


def _bool(v: str) -> bool:
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{v}'")


def _flag(p: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    p.add_argument(name, type=_bool, nargs="?", const=True, default=default, metavar="BOOL",
                   help=help)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help shows its default (when it has one) and a short metavar by type."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default in ([], "", argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return {int: "N", float: "SECONDS", _bool: "BOOL"}.get(action.type, "VALUE")  # type: ignore[arg-type]


# Flags Triton has whose feature this server does not provide: refused, never ignored.
_REFUSED = {
    "--backend-directory": "backends are Python packages found through entry points; install "
                           "them with pip (see `triton backends`)",
    "--repoagent-directory": "repository agents are not supported",
    "--cache-directory": "only the 'local' cache is available (--cache-config local,size=N)",
    "--sagemaker-port": "the SageMaker front end is not supported",
    "--allow-sagemaker": "the SageMaker front end is not supported",
    "--vertex-ai-port": "the Vertex AI front end is not supported",
    "--allow-vertex-ai": "the Vertex AI front end is not supported",
    "--grpc-infer-allocation-pool-size": "not applicable: gRPC messages are allocated by grpcio",
    "--http-thread-count": "not applicable: each process serves HTTP on one asyncio event loop; "
                           "--frontend-processes N runs N of them on the same ports",
    "--buffer-manager-thread-count": "not applicable",
    "--host-policy": "host policies are not supported",
    "--model-namespacing": "model namespacing is not supported yet",
}


def build_parser(prog: str = "tritonserver") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Triton-compatible inference server",
                                formatter_class=_HelpFormatter)
    p.add_argument("--model-repository", "--model-store", action="append", default=[],
                   dest="model_repository", metavar="PATH", help="model repository (required; repeatable)")
    p.add_argument("--model-control-mode", choices=("none", "poll", "explicit"), default="none",
                   help="none: load every model at start; explicit: what --load-model names, then the "
                        "repository API; poll: also rescan every --repository-poll-secs")
    p.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="with explicit mode: model to load at start-up ('*' for all)")
    p.add_argument("--repository-poll-secs", type=float, default=15.0,
                   help='seconds between repository scans in poll mode')
    _flag(p, "--strict-readiness", True, "ready only when every model is ready")
    _flag(p, "--exit-on-error", True, "exit when a model fails to load at start-up")
    p.add_argument("--exit-timeout-secs", type=float, default=30.0,
                   help='on shutdown, seconds in-flight requests get to finish')
    _flag(p, "--disable-auto-complete-config", False, "backends may not complete configs")
    p.add_argument("--strict-model-config", type=_bool, nargs="?", const=True, default=None,
                   help="deprecated: true = --disable-auto-complete-config")
    p.add_argument("--model-load-thread-count", type=int, default=4,
                   help='models loaded in parallel')
    p.add_argument("--model-config-name", default=None,
                   metavar="NAME",
                   help="read configs/NAME.pbtxt instead of config.pbtxt where a model folder has it")
    p.add_argument("--frontend-processes", type=int, default=1, metavar="N",
                   help="server processes sharing the HTTP and gRPC ports (SO_REUSEPORT), one "
                        "event loop each; every process loads every model (docs/frontend-processes.md)")
    p.add_argument("--id", default="triton", dest="server_id",
                   help='server id reported by the server metadata API')
    p.add_argument("--backend-config", action="append", default=[],
                   metavar="BACKEND,KEY=VALUE", help="a setting for one backend (repeatable)")
    _flag(p, "--allow-http", True, "serve HTTP/REST")
    p.add_argument("--http-port", type=int, default=8000,
                   help='HTTP/REST port')
    p.add_argument("--http-address", default="0.0.0.0",
                   help='address the HTTP service listens on')
    p.add_argument("--http-header-forward-pattern", default="", metavar="REGEX",
                   help="request headers whose name matches become request parameters "
                        "(case-insensitive unless the pattern starts with (?-i))")
    p.add_argument("--http-max-input-size", type=int, default=64 * 1024 * 1024,
                   help='largest request body in bytes; larger: 400')
    # bounds of the HTTP transport (frontends/http/server.py HttpLimits: defaults and reasons)
    p.add_argument("--http-max-header-size", type=int, default=64 * 1024, metavar="BYTES",
                   help="largest request head (request line and headers); larger: 431")
    p.add_argument("--http-max-headers", type=int, default=100, metavar="N",
                   help="most header fields in one request; more: 431")
    p.add_argument("--http-max-url-size", type=int, default=8 * 1024, metavar="BYTES",
                   help="longest request URL; longer: 414")
    p.add_argument("--http-header-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="a request head must arrive whole within this time; else 408")
    p.add_argument("--http-body-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="grace for a request body, after which it must average 1 KiB/s; else 408")
    p.add_argument("--http-max-connections", type=int, default=1024, metavar="N",
                   help="most open HTTP connections (at most half the descriptor limit); "
                        "past it an idle one is closed, or the new one gets 503")
    p.add_argument("--http-restricted-api", action="append", default=[],
                   metavar="API[,API]:KEY=VALUE",
                   help="restrict API categories to requests carrying a header (repeatable)")
    _flag(p, "--allow-grpc", True, "serve gRPC")
    p.add_argument("--grpc-port", type=int, default=8001,
                   help='gRPC port')
    p.add_argument("--grpc-address", default="0.0.0.0",
                   help='address the gRPC service listens on')
    p.add_argument("--grpc-use-ssl", type=_bool, nargs="?", const=True, default=False, metavar="BOOL",
                   help="serve gRPC over TLS (needs --grpc-server-cert and --grpc-server-key)")
    p.add_argument("--grpc-use-ssl-mutual", type=_bool, nargs="?", const=True, default=False,
                   metavar="BOOL", help="TLS with client certificates (needs --grpc-root-cert too)")
    p.add_argument("--grpc-server-cert", default="",
                   help='server certificate file (PEM) for --grpc-use-ssl')
    p.add_argument("--grpc-server-key", default="",
                   help='server key file (PEM) for --grpc-use-ssl')
    p.add_argument("--grpc-root-cert", default="",
                   help='root certificate file (PEM) that client certificates are checked against')
    p.add_argument("--grpc-infer-response-compression-level", default="none",
                   choices=("none", "low", "medium", "high"), help="compression of gRPC inference responses")
    p.add_argument("--grpc-keepalive-time", type=int, default=7200000,
                   help='ms between keepalive pings sent to clients')
    p.add_argument("--grpc-keepalive-timeout", type=int, default=20000,
                   help='ms to wait for a keepalive ping acknowledgement')
    p.add_argument("--grpc-keepalive-permit-without-calls", type=_bool, default=False, metavar="BOOL",
                   help="allow keepalive pings on connections without calls")
    p.add_argument("--grpc-http2-max-pings-without-data", type=int, default=2,
                   help='pings allowed without data (0: no limit)')
    p.add_argument("--grpc-http2-min-recv-ping-interval-without-data", type=int, default=300000,
                   help='least ms between client pings without data before they count as strikes')
    p.add_argument("--grpc-http2-max-ping-strikes", type=int, default=2,
                   help='bad pings before the connection is closed (0: no limit)')
    p.add_argument("--grpc-max-connection-age", type=int, default=None,
                   help='ms after which a connection is asked to close (unset: never)')
    p.add_argument("--grpc-max-connection-age-grace", type=int, default=None,
                   help='ms a connection past its age gets to finish its calls')
    p.add_argument("--grpc-handshake-timeout", type=int, default=120000,
                   help="ms a new connection has to send its HTTP/2 preface (h2 engine)")
    p.add_argument("--grpc-header-forward-pattern", default="", metavar="REGEX",
                   help="request metadata whose key matches become request parameters "
                        "(case-insensitive unless the pattern starts with (?-i))")
    p.add_argument("--grpc-restricted-protocol", action="append", default=[],
                   metavar="API[,API]:KEY=VALUE",
                   help="restrict API categories to requests carrying a header (repeatable)")
    p.add_argument("--grpc-engine", default="h2", choices=("h2", "grpcio"),
                   help="h2: HTTP/2 by libnghttp2 on the server's event loop (fastest); "
                        "grpcio: grpc.aio")
    _flag(p, "--allow-metrics", True, "serve Prometheus metrics")
    _flag(p, "--allow-cpu-metrics", True, "report CPU metrics")
    _flag(p, "--allow-gpu-metrics", True, "report GPU metrics (NVIDIA GPUs, through NVML)")
    p.add_argument("--metrics-port", type=int, default=8002,
                   help='Prometheus metrics port')
    p.add_argument("--metrics-address", default="0.0.0.0",
                   help='address the metrics service listens on')
    p.add_argument("--metrics-interval-ms", type=int, default=2000,
                   help='ms between updates of the polled metrics (CPU, memory, GPUs)')
    p.add_argument("--metrics-config", action="append", default=[], metavar="<setting>=<value>",
                   help="Triton's metrics settings: summary_latencies=true, summary_quantiles=..., "
                        "counter_latencies=false, histogram_latencies=true (repeatable)")
    _flag(p, "--allow-client-shm", False,
          "allow the system and CUDA shared-memory extensions")
    p.add_argument("--min-supported-compute-capability", type=float, default=6.0,
                   help="GPUs below this CUDA compute capability are not used")
    p.add_argument("--cuda-memory-pool-byte-size", action="append", default=[],
                   metavar="<GPU id>:<bytes>",
                   help="accepted for Triton compatibility; no CUDA pool is kept (docs/gpus.md)")
    p.add_argument("--pinned-memory-pool-byte-size", type=int, default=268435456,
                   help="accepted for Triton compatibility; no pinned pool is kept (docs/gpus.md)")
    p.add_argument("--shm-max-regions", type=int, default=1024,
                   help="registered system shared-memory regions at most (each holds a memory "
                        "map and a file descriptor)")
    p.add_argument("--trace-config", action="append", default=[],
                   metavar="[triton,]<setting>=<value>",
                   help="tracing: level=TIMESTAMPS, rate=N, count=N, triton,file=PATH, "
                        "triton,log-frequency=N (repeatable; Triton's settings)")
    for old, key in (("--trace-file", "triton,file"), ("--trace-level", "level"),
                     ("--trace-rate", "rate"), ("--trace-count", "count"),
                     ("--trace-log-frequency", "triton,log-frequency")):
        p.add_argument(old, action="append", default=[], metavar="VALUE",
                       help=f"deprecated, as Triton: --trace-config {key}=VALUE")
    p.add_argument("--rate-limit", default="off", choices=("off", "execution_count"),
                   help="execution_count: an instance executes only while the resources of its "
                        "instance group's rate_limiter are free, by priority")
    p.add_argument("--rate-limit-resource", action="append", default=[],
                   metavar="<name>:<count>[:<device>]",
                   help="resources available to the rate limiter (repeatable; default: the "
                        "largest count an instance asks for)")
    p.add_argument("--cache-config", action="append", default=[], metavar="<cache>,<key>=<value>",
                   help="response cache settings, e.g. local,size=1048576")
    p.add_argument("--log-verbose", type=int, default=0,
                   help='verbose logging level (0: off)')
    p.add_argument("--log-info", type=_bool, default=True,
                   help='log informational messages')
    p.add_argument("--log-warning", type=_bool, default=True,
                   help='log warnings')
    p.add_argument("--log-error", type=_bool, default=True,
                   help='log errors')
    p.add_argument("--log-format", choices=("default", "ISO8601"), default="default",
                   help='time stamp format of log lines')
    p.add_argument("--log-file", default="",
                   help='write the log to this file instead of stderr')
    for flag in _REFUSED:
        p.add_argument(flag, default=None, dest="refused_" + flag[2:].replace("-", "_"),
                       help=argparse.SUPPRESS)
    p.add_argument("--version", action=VersionAction,
                   help="print the versions of the core and of the installed backends, and exit")
    return p


def _backend_config(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        backend, sep, kv = item.partition(",")
        if not sep:
            # Triton allows global settings without a backend name
            backend, kv = "", item
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise SystemExit(f"error: --backend-config expects <backend>,<key>=<value>, got '{item}'")
        out.setdefault(backend, {})[key] = value
    return out


def _restricted(items: list[str], flag: str) -> dict[str, tuple[str, str]]:
    try:
        return parse_rules(items, flag)  # the categories of frontends/restricted.py
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def options_from_args(a: argparse.Namespace) -> ServerOptions:
    for flag in _REFUSED:
        if getattr(a, "refused_" + flag[2:].replace("-", "_")) is not None:
            raise SystemExit(f"error: {flag} is not supported by triton-core: {_REFUSED[flag]}")
    for flag, pattern in (("--http-header-forward-pattern", a.http_header_forward_pattern),
                          ("--grpc-header-forward-pattern", a.grpc_header_forward_pattern)):
        if pattern:
            try:
                HeaderForward(pattern, flag)
            except TritonError as e:
                raise SystemExit(f"error: {e.message}") from None
    if (a.grpc_use_ssl or a.grpc_use_ssl_mutual) and not (a.grpc_server_cert and a.grpc_server_key):
        raise SystemExit("error: --grpc-use-ssl needs --grpc-server-cert and --grpc-server-key")
    if a.grpc_use_ssl_mutual and not a.grpc_root_cert:
        raise SystemExit("error: --grpc-use-ssl-mutual needs --grpc-root-cert")
    trace_config = list(a.trace_config)
    for dest, key in (("trace_file", "triton,file"), ("trace_level", "level"),
                      ("trace_rate", "rate"), ("trace_count", "count"),
                      ("trace_log_frequency", "triton,log-frequency")):
        trace_config += [f"{key}={v}" for v in getattr(a, dest)]
    try:
        traces = parse_trace_flags(trace_config)
        if traces.mode == "opentelemetry":  # the SDK is there and the settings are good
            from .scheduling.trace_otel import OtelExporter

            OtelExporter(traces.opentelemetry).close()
    except TritonError as e:
        raise SystemExit(f"error: {e.message}") from None
    try:
        metrics_config = parse_flags(a.metrics_config)
        MetricsConfig.parse(metrics_config)
    except TritonError as e:
        raise SystemExit(f"error: {e.message}") from None
    if not a.model_repository:
        raise SystemExit("error: --model-repository is required: the folder of your models, e.g. "
                         "--model-repository examples/model_repository (--help lists every flag)")
    _http_limits(a)  # bad --http-* bounds stop the start, before any model loads
    for r in a.rate_limit_resource:
        try:
            parse_resource_flag(r)
        except TritonError as e:
            raise SystemExit(f"error: {e.message}") from None
    auto_off = a.disable_auto_complete_config or bool(a.strict_model_config)
    return ServerOptions(
        model_repository=list(a.model_repository),
        model_control_mode=a.model_control_mode,
        load_model=a.load_model,
        repository_poll_secs=a.repository_poll_secs,
        strict_readiness=a.strict_readiness,
        exit_on_error=a.exit_on_error,
        exit_timeout_secs=a.exit_timeout_secs,
        disable_auto_complete_config=auto_off,
        model_load_thread_count=a.model_load_thread_count,
        model_config_name=a.model_config_name,
        backend_config=_backend_config(a.backend_config),
        server_id=a.server_id,
        allow_client_shm=a.allow_client_shm,
        shm_max_regions=a.shm_max_regions,
        cache_config=_cache_config(a.cache_config),
        rate_limit=a.rate_limit,
        metrics_config=metrics_config,
        trace_config=trace_config,
        rate_limit_resource=a.rate_limit_resource,
        min_supported_compute_capability=a.min_supported_compute_capability,
        cuda_memory_pool_byte_size=_cuda_pools(a.cuda_memory_pool_byte_size),
        pinned_memory_pool_byte_size=a.pinned_memory_pool_byte_size,
    )


def _cuda_pools(items: list[str]) -> dict[int, int]:
    """--cuda-memory-pool-byte-size <GPU id>:<bytes>, Triton's syntax."""
    out: dict[int, int] = {}
    for item in items:
        dev, sep, size = item.partition(":")
        try:
            if not sep:
                raise ValueError
            out[int(dev)] = int(size)
            if int(dev) < 0 or int(size) < 0:
                raise ValueError
        except ValueError:
            raise SystemExit("error: --cuda-memory-pool-byte-size expects <GPU device ID>:<pool "
                             f"byte size>, got '{item}'") from None
    return out


def _http_limits(a: argparse.Namespace) -> Any:
    from .frontends.http.server import HttpLimits

    for flag, v in (("--http-max-header-size", a.http_max_header_size),
                    ("--http-max-headers", a.http_max_headers),
                    ("--http-max-url-size", a.http_max_url_size),
                    ("--http-header-timeout", a.http_header_timeout),
                    ("--http-body-timeout", a.http_body_timeout),
                    ("--http-max-connections", a.http_max_connections)):
        if not v > 0:
            raise SystemExit(f"error: {flag} must be positive, got {v}")
    return HttpLimits(max_header_size=a.http_max_header_size, max_headers=a.http_max_headers,
                      max_url_size=a.http_max_url_size, header_timeout=a.http_header_timeout,
                      body_timeout=a.http_body_timeout, max_connections=a.http_max_connections)


def _cache_config(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        cache, sep, kv = item.partition(",")
        key, eq, value = kv.partition("=")
        if not sep or not eq or not key or not cache:
            raise SystemExit(f"error: --cache-config expects <cache>,<key>=<value>, got '{item}'")
        if cache != "local":
            raise SystemExit(f"error: --cache-config: cache '{cache}' is not supported (only 'local')")
        if key == "size":
            try:
                if int(value) < 0:
                    raise ValueError
            except ValueError:
                raise SystemExit(f"error: --cache-config local,size expects bytes, got '{value}'") from None
        out.setdefault(cache, {})[key] = value
    return out


def _print_tables(server: Server) -> None:
    # a backend no model used is "installed": checking it would import its framework
    # (`triton backends` checks every one)
    rows = [(e.name, "installed" if e.check is not None else e.status, e.reason or e.distribution)
            for e in server.registry.entries]
    _table("Backend", ("Backend", "Status", "Details"), rows)
    # A start that failed has unloaded everything: its load errors say why, as Triton's table does.
    errors = dict(server.load_errors)
    mrows = [(r["name"], r.get("version", ""),
              f"UNAVAILABLE: {errors.pop(r['name'])}" if r["name"] in errors else
              r.get("state", "") + (f": {r['reason']}" if r.get("reason") else ""))
             for r in server.repository_index()]
    mrows += [(name, "", f"UNAVAILABLE: {error}") for name, error in sorted(errors.items())]
    _table("Model", ("Model", "Version", "Status"), mrows)


def _table(_kind: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [sep, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |", sep]
    for r in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    lines.append(sep)
    log.info("\n%s", "\n".join(lines))


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
        return "address already in use"
    return (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__


def _start_failure(service: str, port_flag: str, address: str, port: int, reason: str) -> str:
    """One line for a front end that cannot listen, naming the flag that changes it."""
    if "in use" in reason.lower() or "failed to bind" in reason.lower():
        return (f"failed to start {service} service: {address}:{port} is already in use "
                f"(stop what listens there or choose another port with {port_flag})")
    return (f"failed to start {service} service on {address}:{port}: {reason} "
            f"(see {port_flag} and {port_flag.replace('-port', '-address')})")


async def _close_all(closers: list[Any], tasks: list[asyncio.Task]) -> None:
    """Stops the front ends already started when a later one cannot start."""
    for c in closers:
        r = c()
        if asyncio.iscoroutine(r):
            await r
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _serve_async(server: Server, a: argparse.Namespace, index: int | None = None) -> int:
    """``index``: this process's number among --frontend-processes (None: the only one)."""
    from .frontends.http.app import HttpFrontEnd

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        server.begin_stop(exit_process=True)  # the exit deadline starts now
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass
    if server.stop_deadline is not None:  # a signal came during start-up
        stop.set()
    tasks: list[asyncio.Task] = []
    closers: list[Any] = []
    if a.allow_http:
        http = HttpFrontEnd(server, max_input_size=a.http_max_input_size,
                            restricted=_restricted(a.http_restricted_api, "--http-restricted-api"),
                            limits=_http_limits(a),
                            header_forward_pattern=a.http_header_forward_pattern,
                            reuse_port=index is not None)
        tasks.append(asyncio.create_task(http.serve(a.http_address, a.http_port)))
        closers.append(lambda: http.shutdown(server.stop_time_left()))
        while not http.started:
            if tasks[-1].done():
                failure = tasks[-1].exception()
                reason = _os_reason(failure) if failure is not None else "the service stopped"
                log.error("%s", _start_failure("HTTP", "--http-port", a.http_address, a.http_port, reason))
                await _close_all(closers, tasks)
                return 1
            await asyncio.sleep(0.01)
        log.info("Started HTTPService at %s:%d", a.http_address, a.http_port)
    if a.allow_grpc:
        from .frontends.grpc import GrpcFrontEnd, GrpcOptions

        grpc_front = GrpcFrontEnd(server, a.grpc_address, a.grpc_port, GrpcOptions(
            compression_level=a.grpc_infer_response_compression_level,
            keepalive_time_ms=a.grpc_keepalive_time,
            keepalive_timeout_ms=a.grpc_keepalive_timeout,
            keepalive_permit_without_calls=a.grpc_keepalive_permit_without_calls,
            http2_max_pings_without_data=a.grpc_http2_max_pings_without_data,
            http2_min_recv_ping_interval_without_data_ms=a.grpc_http2_min_recv_ping_interval_without_data,
            http2_max_ping_strikes=a.grpc_http2_max_ping_strikes,
            max_connection_age_ms=a.grpc_max_connection_age,
            max_connection_age_grace_ms=a.grpc_max_connection_age_grace,
            handshake_timeout_ms=a.grpc_handshake_timeout,
            use_ssl=a.grpc_use_ssl or a.grpc_use_ssl_mutual,
            ssl_server_cert=a.grpc_server_cert,
            ssl_server_key=a.grpc_server_key,
            ssl_root_cert=a.grpc_root_cert,
            ssl_mutual_auth=a.grpc_use_ssl_mutual,
            restricted=_restricted(a.grpc_restricted_protocol, "--grpc-restricted-protocol"),
            engine=a.grpc_engine,
            header_forward_pattern=a.grpc_header_forward_pattern,
            reuse_port=index is not None,
        ))
        try:
            await grpc_front.start()
        except TritonError as e:
            log.error("%s", _start_failure("gRPC", "--grpc-port", a.grpc_address, a.grpc_port, e.message))
            await _close_all(closers, tasks)
            return 1
        closers.append(lambda: grpc_front.stop(server.stop_time_left()))
    if a.allow_metrics and not index:  # one metrics port, served by process 0
        from .frontends.metrics import MetricsFrontEnd

        metrics_front = MetricsFrontEnd(server, a.metrics_address, a.metrics_port,
                                        a.metrics_interval_ms, cpu_metrics=a.allow_cpu_metrics,
                                        gpu_metrics=a.allow_gpu_metrics)
        try:
            await metrics_front.start()
        except OSError as e:
            reason = _os_reason(e.__cause__ if isinstance(e.__cause__, OSError) else e)
            log.error("%s", _start_failure("metrics", "--metrics-port", a.metrics_address,
                                           a.metrics_port, reason))
            await _close_all(closers, tasks)
            return 1
        closers.append(metrics_front.stop)
    await stop.wait()
    log.info("Signal received, shutting down (in-flight requests get up to %g s)",
             server.stop_time_left())
    # Every front end stops accepting and drains at once, under the one deadline.
    waits: list[asyncio.Future] = [asyncio.ensure_future(r) for c in closers
                                   if asyncio.iscoroutine(r := c())]
    waits.extend(tasks)
    if waits:
        done, left = await asyncio.wait(waits, timeout=server.stop_time_left() + 2.0)
        for t in left:
            t.cancel()
    return 0


def serve(argv: list[str] | None, prog: str = "tritonserver") -> int:
    a = build_parser(prog).parse_args(argv)
    opts = options_from_args(a)
    n = a.frontend_processes
    if n < 1:
        raise SystemExit(f"error: --frontend-processes must be at least 1, got {n}")
    if n == 1:
        return _serve_process(a, opts, None)
    from . import frontend_processes

    refused = frontend_processes.refusals(a)
    if refused:
        raise SystemExit("error: --frontend-processes > 1 cannot be used with " + "; ".join(refused))
    busy = frontend_processes.bind_failures(a)
    for service, flag, address, port, err in busy:
        log.error("%s", _start_failure(service, flag, address, port, _os_reason(err)))
    if busy:
        return 1
    folder = frontend_processes.peer_dir()
    try:
        return frontend_processes.supervise(n, lambda index: _serve_process(a, opts, index, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve_process(a: argparse.Namespace, opts: ServerOptions, index: int | None,
                   peer_folder: str = "") -> int:
    server = Server(opts)
    if index is not None:
        from .frontend_processes import start_peers

        start_peers(server, peer_folder, index, a.frontend_processes)
    server.log_settings.log_info = a.log_info
    server.log_settings.log_warning = a.log_warning
    server.log_settings.log_error = a.log_error
    server.log_settings.log_verbose_level = a.log_verbose
    server.log_settings.log_format = a.log_format
    server.log_settings.install(a.log_file)
    log.info("triton-core %s starting%s", __version__,
             "" if index is None else f" (front-end process {index} of {a.frontend_processes})")
    for failure in prestart.FAILURES:  # the launcher's (launcher.py)
        log.warning("%s", failure)
    prestart.FAILURES.clear()
    # A signal during start-up (a long load) starts the shutdown at once: loads in
    # progress give up and the exit deadline runs from now. The handler stays until the
    # loop's own replaces it: a signal in between (while the tables print) must stop the
    # server, not kill it (_serve_async sees server.stop_deadline).
    previous = {sig: signal.signal(sig, lambda *_: server.begin_stop(exit_process=True))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _start_and_serve(server, a, index)
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _start_and_serve(server: Server, a: argparse.Namespace, index: int | None) -> int:
    try:
        server.start()
        if index is not None and not _others_loaded(server):
            log.info("Signal received during start-up, exiting")
            server.stop()
            return 0
    except TritonError as e:
        if server.stop_deadline is not None:  # start() stopped the server already
            log.info("Signal received during start-up, exiting")
            return 0
        log.error("%s", e.message)
        _print_tables(server)
        log.error("exiting: failed to start the server (--exit-on-error=true)")
        return 1
    try:
        _print_tables(server)
        runner: Any = asyncio.run
        if os.environ.get("TRITON_CORE_EVENT_LOOP", "uvloop") == "uvloop":
            try:
                import uvloop

                runner = uvloop.run
            except ImportError:
                pass
        return runner(_serve_async(server, a, index))
    finally:
        server.stop()
        if server.peers is not None:
            server.peers.close()
        log.info("server stopped")


def _others_loaded(server: Server) -> bool:
    from .frontend_processes import wait_for_the_others

    return wait_for_the_others(server)


def tritonserver_main() -> None:
    sys.exit(serve(sys.argv[1:]))


def _backends_cmd(a: argparse.Namespace) -> int:
    from .models.registry import BackendRegistry

    reg = BackendRegistry()
    reg.discover()
    rows = [e.as_dict() for e in reg.entries]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        hint = pip_install("triton-backend-onnx")
        print("no backends installed" + (f"; the ONNX Runtime backend: {hint}" if hint else ""))
        return 0
    for r in rows:
        abi = ".".join(map(str, r["abi"])) if r["abi"] else "-"
        line = (f"{r['name']:<14} {r['status']:<12} {r['distribution'] or '-'} "
                f"{r['version'] or ''}  abi {abi}  platforms: {', '.join(r['platforms']) or '-'}")
        if r["reason"]:
            line += f"\n{'':<14} reason: {r['reason']}"
        print(line)
    return 0


def _check_cmd(a: argparse.Namespace) -> int:
    from .checker import check_repository

    errors, report = check_repository([Path(r) for r in a.repository], a.model_config_name)
    for line in report:
        print(line)
    return 1 if errors else 0


def _conformance_cmd(argv: list[str]) -> int:
    """`triton conformance ...`: delegated to the triton-conformance distribution."""
    try:
        from triton_conformance.cli import main
    except ImportError as e:
        hint = pip_install("triton-conformance") or "install the triton-conformance distribution"
        print(f"error: the conformance suite is not installed: {hint} "
              f"(then run `triton conformance <backend>`) [{e}]", file=sys.stderr)
        return 2
    return main(argv, prog="triton conformance")


def build_triton_parser() -> argparse.ArgumentParser:
    """`triton`'s parser; `serve` and `conformance` pass their arguments on (to tritonserver's
    parser and to the conformance suite), so they declare none here."""
    p = argparse.ArgumentParser(prog="triton", description="triton-core command line",
                                epilog="`triton COMMAND --help` tells more about a command.")
    p.add_argument("--version", action=VersionAction,
                   help="print the versions of the core and of the installed backends, and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.add_parser("serve", help="serve a model repository (same flags as tritonserver; --ray "
                   "[--replicas N]: replicas on Ray Serve)",
                   add_help=False)
    b = sub.add_parser("backends", help="list installed backends")
    b.add_argument("--json", action="store_true", help="print the list as JSON")
    c = sub.add_parser("check", help="validate a model repository without serving it")
    c.add_argument("repository", nargs="+", help="model repository folder(s)")
    c.add_argument("--model-config-name", default=None,
                   metavar="NAME",
                   help="read configs/NAME.pbtxt instead of config.pbtxt where a model folder has it")
    sub.add_parser("conformance", add_help=False,
                   help="run the conformance suite against a backend (needs triton-conformance)")
    return p


def triton_main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    p = build_triton_parser()
    if args and args[0] == "conformance":
        sys.exit(_conformance_cmd(args[1:]))
    if args and args[0] == "serve" and "--ray" in args[1:]:
        from .frontends.ray_serve import serve_main  # imports ray: only when asked

        try:
            sys.exit(serve_main(args[1:]))
        except TritonError as e:
            raise SystemExit(f"error: {e.message}") from None
    if args and args[0] == "serve":
        sys.exit(serve(args[1:], prog="triton serve"))
    a = p.parse_args(args)
    if a.cmd is None:  # no command: say what there is
        p.print_help()
        sys.exit(0)
    if a.cmd == "backends":
        sys.exit(_backends_cmd(a))
    sys.exit(_check_cmd(a))


if __name__ == "__main__":
    tritonserver_main()
