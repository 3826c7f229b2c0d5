"""End-to-end: the real `tritonserver` command on free ports, the example repository."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import tritonclient.http as httpclient

from triton_core.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "model_repository"
BIN = Path(sys.executable).parent


class Running:
    def __init__(self, proc: subprocess.Popen, http: int, grpc: int, metrics: int, log: Path):
        self.proc, self.http, self.grpc, self.metrics, self.log = proc, http, grpc, metrics, log

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"


def start_server(tmp_path: Path, *args: str, wait_ready: bool = True) -> Running:
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = tmp_path / "server.log"
    cmd = [str(BIN / "tritonserver"), "--http-address", "127.0.0.1", "--http-port", str(http),
           "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc),
           "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics), *args]
    env = dict(os.environ)
    env.pop("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    r = Running(proc, http, grpc, metrics, log)
    if wait_ready:
        client = httpclient.InferenceServerClient(r.http_url)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()}")
            try:
                if client.is_server_live():
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        # gRPC and metrics start after HTTP: wait until their ports accept connections
        for port in (grpc, metrics):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"port {port} never opened:\n{log.read_text()}") from None
                    time.sleep(0.05)
    return r


def stop_server(r: Running) -> int:
    r.proc.terminate()
    try:
        return r.proc.wait(30)
    except subprocess.TimeoutExpired:
        r.proc.kill()
        return r.proc.wait()


