"""`--frontend-processes N`: N full server processes accepting on the same ports.

One asyncio loop serves every request of a process (parsing, scheduling, response
writing), so one process uses about one core. With N > 1 the command forks N
children before anything else starts; each loads the repository and serves HTTP and
gRPC on the same ports with SO_REUSEPORT, so the kernel spreads new connections over
them. Each child holds its own copy of every model (memory times N). Statistics and
metrics are summed over the processes, settings changes and system shared-memory
registrations made in every one (peers.py). What cannot be right across processes
(explicit model control, a sequence's state, CUDA shared memory) is refused: at
start-up where a flag asks for it (``refusals``), a sequence-batched model fails to
load. The parent only forwards signals and waits.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .errors import TritonError
from .logsettings import LOGGER
from .scheduling.metrics_config import MetricsConfig, parse_flags

log = LOGGER


def refusals(a: argparse.Namespace) -> list[str]:
    """What --frontend-processes N > 1 cannot serve correctly, each with its reason."""
    out = []
    if not sys.platform.startswith("linux"):
        out.append(f"this platform ({sys.platform}): only Linux spreads the connections of one "
                   "port over the processes that share it (SO_REUSEPORT)")
    if a.model_control_mode == "explicit":
        out.append("--model-control-mode=explicit: a load or unload request reaches one "
                   "process only")
    if a.rate_limit != "off":
        out.append("--rate-limit: each process would grant the resources on its own (N times "
                   "what --rate-limit-resource allows)")
    if a.cache_config:
        out.append("--cache-config: each process would hold a cache of its own, and the cache "
                   "metrics would count one process")
    if MetricsConfig.parse(parse_flags(a.metrics_config)).summary_latencies:
        out.append("--metrics-config summary_latencies=true: quantiles of several processes "
                   "do not add up")
    files = [item for item in [*a.trace_config, *(f"file={v}" for v in a.trace_file)]
             if item.removeprefix("triton,").partition("=")[0].strip() == "file"
             and item.partition("=")[2].strip()]
    if files:
        out.append("a trace file (--trace-config triton,file=...): the processes would write "
                   "one file over each other")
    for flag, allowed, port in (("--http-port", a.allow_http, a.http_port),
                                ("--grpc-port", a.allow_grpc, a.grpc_port)):
        if allowed and port == 0:
            out.append(f"{flag} 0: each process would listen on a port of its own")
    if a.allow_grpc and a.grpc_engine != "h2":
        out.append("--grpc-engine=grpcio: only the h2 engine's listener is shared here")
    return out


# why sequence-batched models are refused: a sequence's requests may arrive on connections
# that different processes accepted, and its state lives in one of them
SEQUENCE_REFUSED = ("--frontend-processes > 1 cannot serve sequence-batched models (a "
                    "sequence's requests must reach one instance)")


def bind_failures(a: argparse.Namespace) -> list[tuple[str, str, str, int, OSError]]:
    """The ports the command would serve that something already holds: (service, flag,
    address, port, error). The children share their ports with each other only (the check
    binds without SO_REUSEPORT), so another server on the port, a second
    --frontend-processes one too, is refused instead of taking a share of the connections."""
    out = []
    for service, flag, allowed, address, port in (
            ("HTTP", "--http-port", a.allow_http, a.http_address, a.http_port),
            ("GRPC", "--grpc-port", a.allow_grpc, a.grpc_address, a.grpc_port)):
        if not allowed:
            continue
        try:
            family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
                s.bind((address, port))
        except OSError as e:
            out.append((service, flag, address, port, e))
    return out


def start_peers(server: Any, folder: str, index: int, count: int) -> None:
    """This process answers the others' questions and passes its settings changes on."""
    from .frontends.metrics import TritonCollector
    from .peers import Peers

    peers = Peers(folder, index, count)
    server.manager.refuse_config = (
        lambda cfg: SEQUENCE_REFUSED if cfg.sequence_batching is not None else None)
    collector = TritonCollector(server, cpu_metrics=False)
    peers.handle("statistics", lambda r: server.statistics_here(r["name"], r["version"]))
    peers.handle("model_families", lambda r: collector.model_families_here())
    peers.handle("trace_setting",
                 lambda r: server.update_trace_setting_here(r["model"], r["changes"]))
    peers.handle("log_settings",
                 lambda r: server.log_settings.update(r["changes"], everywhere=False))
    peers.handle("loaded", lambda r: server.live)  # live once start() loaded the models
    server.log_settings.on_update = lambda changes: peers.ask_others("log_settings",
                                                                    changes=changes)
    if server.shm_registry is not None:
        _share_registrations(server.shm_registry, peers)
    if server.cuda_shm_registry is not None:
        server.cuda_shm_registry.refused = (
            "CUDA shared memory is not available with --frontend-processes > 1 (each process "
            "would have to open the handle; not done)")
    peers.start()
    server.peers = peers


def _share_registrations(registry: Any, peers: Any) -> None:
    """A system shared-memory region registered through one process is registered in every
    process (each maps it), before the client gets its answer; if one process refuses it,
    none keeps it and the client gets that process's error."""

    def register(name: str, key: str, offset: int, byte_size: int) -> None:
        answers = peers.ask_each("shm_register", name=name, key=key, offset=offset,
                                 byte_size=byte_size)
        failed = [a for _, a in answers if isinstance(a, BaseException)]
        if failed:
            for i, a in answers:
                if not isinstance(a, BaseException):
                    peers.ask_one(i, "shm_unregister", name=name)
            err = failed[0]
            raise err if isinstance(err, TritonError) else TritonError.internal(
                f"failed to register shared memory region '{name}' in every front-end "
                f"process: {err}")

    def unregister(name: str | None) -> None:
        peers.ask_others("shm_unregister", name=name)

    def unregister_here(name: str | None) -> None:
        if name is None:
            registry.unregister_all(everywhere=False)
        else:
            registry.unregister(name, everywhere=False)

    peers.handle("shm_register", lambda r: registry.register(
        r["name"], r["key"], r["offset"], r["byte_size"], everywhere=False))
    peers.handle("shm_unregister", lambda r: unregister_here(r["name"]))
    registry.on_register = register
    registry.on_unregister = unregister


def wait_for_the_others(server: Any) -> bool:
    """After this process's models loaded, wait until every other process's did: none
    accepts before all can (a connection may reach any of them, a registration must reach
    all). False when the server is told to stop meanwhile (a signal: another process failed)."""
    peers = server.peers
    while server.stop_deadline is None:
        if all(answer is True for _, answer in peers.ask_each("loaded")):
            return True
        time.sleep(0.02)  # a peer still loading, or its socket not yet there
    return False


def peer_dir() -> str:
    """A private folder for the processes' peer sockets (peers.py)."""
    return tempfile.mkdtemp(prefix="triton-frontends-")


def supervise(n: int, run_child: Callable[[int], int]) -> int:
    """Forks n children that each call run_child(index) and exit with its status; waits
    for all. SIGINT/SIGTERM reach every child; when one child fails the others stop."""
    children: dict[int, int] = {}
    asked_to_stop: set[int] = set()  # the signals the parent was sent

    def on_signal(sig: int, frame: Any) -> None:
        asked_to_stop.add(sig)
        forward(sig, frame)

    def forward(sig: int, _frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    stops = {signal.SIGINT, signal.SIGTERM}
    for sig in stops:
        signal.signal(sig, on_signal)
    parent = os.getpid()
    # Held back during the forks: a stop that came between a fork and the child's
    # entry in `children` would miss that child, and a child would run the parent's
    # handler. Released after them, it reaches every child.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        for index in range(n):
            pid = os.fork()
            if pid == 0:
                rc = 1
                try:
                    _stop_with_parent(parent)
                    signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
                    rc = run_child(index)
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    log.exception("front-end process %d failed", index)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(rc)
            children[pid] = index
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        rc = os.waitstatus_to_exitcode(status)
        if -rc in asked_to_stop:
            rc = 0  # a child still starting dies of the signal that stops the server: a stop
        if rc != 0 and worst == 0:
            log.error("front-end process %d exited with status %d; stopping the others", index, rc)
            forward(signal.SIGTERM, None)
        worst = worst or (rc if rc > 0 else 1 if rc else 0)
    return worst


def _stop_with_parent(parent: int) -> None:
    """A child gets SIGTERM when the parent dies (even by SIGKILL), rather than serving on
    with its peers' folder gone. Linux's PR_SET_PDEATHSIG; the only platform N > 1 runs on."""
    # until the server's own handlers: a stop signal ends a child still starting, and the
    # parent (which sent it) counts that as a stop
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("front-end process: prctl(PR_SET_PDEATHSIG) failed (errno %d)",
                    ctypes.get_errno())
    if os.getppid() != parent:  # the parent died before the call above
        os.kill(os.getpid(), signal.SIGTERM)
