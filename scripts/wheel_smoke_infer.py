"""Part of scripts/wheel_smoke.sh: waits for the server, then infers `simple` over HTTP and gRPC.

Usage: python wheel_smoke_infer.py HTTP_PORT GRPC_PORT SERVER_PID
Exits non-zero with the reason when the server dies, never gets ready, or answers wrongly.
"""

from __future__ import annotations

import os
import sys
import time
from types import ModuleType
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

READY_DEADLINE_S = 120.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_ready(client: httpclient.InferenceServerClient, pid: int) -> None:
    # a script, not a test: polls the readiness endpoint until a deadline
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            sys.exit("wheel smoke: the server exited before it was ready (its log is above)")
        try:
            if client.is_server_ready():
                return
        except Exception:  # noqa: BLE001 (connection refused while it starts)
            pass
        time.sleep(0.2)
    sys.exit(f"wheel smoke: the server was not ready within {READY_DEADLINE_S:.0f} s")


def infer(client_module: ModuleType, client: Any, via: str) -> None:
    """client_module: tritonclient.http or tritonclient.grpc; client: its InferenceServerClient."""
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    inputs = [client_module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple", inputs)
    out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    if not (np.array_equal(out0, a + b) and np.array_equal(out1, a - b)):
        sys.exit(f"wheel smoke: wrong result over {via}: {out0}, {out1}")
    print(f"wheel smoke: simple over {via}: OK")


def main() -> None:
    http_port, grpc_port, pid = (int(x) for x in sys.argv[1:4])
    http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    wait_ready(http, pid)
    infer(httpclient, http, "HTTP")
    infer(grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"), "gRPC")


if __name__ == "__main__":
    main()
