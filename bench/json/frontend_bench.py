"""The HTTP front end's own cost per /infer request, the inference itself answered at once.

    python bench/json/frontend_bench.py [label]          # this tree
    PYTHONPATH=/tmp/main-src/core python bench/json/frontend_bench.py main

HttpFrontEnd.handle on bench/json/add_json.lua's JSON request (two FP32 [1,16] inputs,
outputs as JSON) and on the same request with binary tensors (perf_analyzer's form), with
a server whose infer_async answers at once with outputs shaped as the python backend gives
them. Microseconds per request, the best of nine runs of 2000: routing, body, parsing,
checks, the response's JSON; no sockets, no scheduling, no backend.
"""

from __future__ import annotations

import asyncio
import json
import sys
import timeit
import types
from typing import Any

import numpy as np

from triton_core.dtypes import DataType
from triton_core.frontends.http.app import HttpFrontEnd, _Req
from triton_core.request import InferenceRequest, InferenceResponse
from triton_core.tensor import Tensor

N = 16
PATH = "/v2/models/add_py/infer"
_OUT = (np.arange(N, dtype=np.float32) * np.float32(0.37)).tobytes()


class AnsweringServer:
    """What HttpFrontEnd reads of a Server, answering every inference at once."""

    log_settings = types.SimpleNamespace(log_verbose_level=0)
    shm_io = None
    traces = types.SimpleNamespace(exporter=None)

    async def infer_async(self, req: InferenceRequest, decoupled_msg: str | None = None
                          ) -> InferenceResponse:
        # outputs as the python backend gives them: raw views of its arena
        return InferenceResponse(model_name="add_py", model_version=1, id=req.id, outputs=[
            Tensor.from_raw(f"OUTPUT{i}", DataType.FP32, (1, N), memoryview(_OUT)) for i in (0, 1)])


def bodies() -> dict[str, tuple[bytes, dict[bytes, bytes]]]:
    a = [round(i * 0.5, 1) for i in range(N)]
    b = [round(1 + i * 0.25, 2) for i in range(N)]
    inputs = [{"name": "INPUT0", "shape": [1, N], "datatype": "FP32", "data": a},
              {"name": "INPUT1", "shape": [1, N], "datatype": "FP32", "data": b}]
    as_json = json.dumps({"inputs": inputs}).encode()
    header = json.dumps({
        "inputs": [{k: v for k, v in i.items() if k != "data"}
                   | {"parameters": {"binary_data_size": 4 * N}} for i in inputs],
        "parameters": {"binary_data_output": True}}).encode()
    binary = header + np.array(a, np.float32).tobytes() + np.array(b, np.float32).tobytes()
    return {"json": (as_json, {b"content-type": b"application/json"}),
            "binary": (binary, {b"inference-header-content-length": str(len(header)).encode()})}


def per_request_us(app: HttpFrontEnd, loop: asyncio.AbstractEventLoop, body: bytes,
                   headers: dict[bytes, bytes]) -> float:
    parts = [p for p in PATH.split("/") if p]

    async def many(k: int) -> Any:
        for _ in range(k):
            status, _, out = await app.handle(_Req("POST", parts, headers, None, app, body), PATH)
            assert status == 200, out

    loop.run_until_complete(many(100))
    runs = timeit.repeat(lambda: loop.run_until_complete(many(2000)), number=1, repeat=9)
    return min(runs) / 2000 * 1e6


def main() -> None:
    app = HttpFrontEnd(AnsweringServer())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    res = [f"{label} {per_request_us(app, loop, body, hdrs):.2f} us"
           for label, (body, hdrs) in bodies().items()]
    print(sys.argv[1] if len(sys.argv) > 1 else "", *res)


if __name__ == "__main__":
    main()
