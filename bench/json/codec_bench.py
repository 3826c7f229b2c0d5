"""The JSON inference path's pieces, in microseconds per call (the best of several repeats).

    python bench/json/codec_bench.py            # the parsers and writers, then our path
    python bench/json/codec_bench.py --elements 1024

The request of bench/json/add_json.lua (two FP32 [1,N] inputs as JSON arrays) and its
response (two FP32 outputs as JSON): json (the standard library), orjson (when installed)
and msgspec (untyped, and typed into Structs), then the front end's own functions
(decode_json, parse_request, build_response). On a shared machine the minimum of the
repeats is the number to compare.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from triton_core.dtypes import DataType
from triton_core.frontends.http.infer import build_response, parse_request
from triton_core.frontends.http.json_codec import decode_json, encode_json
from triton_core.request import InferenceResponse
from triton_core.tensor import Tensor

try:
    import orjson
except ImportError:  # optional: only measured when installed
    orjson = None


class _Input(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str = ""
    parameters: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] | None = None


def best_us(fn: Callable[[], Any], number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--elements", type=int, default=16)
    ap.add_argument("--number", type=int, default=5000)
    args = ap.parse_args()
    n = args.elements
    a = [round(i * 0.5, 1) for i in range(n)]
    b = [round(1.0 + i * 0.25, 2) for i in range(n)]
    request = {"inputs": [
        {"name": "INPUT0", "shape": [1, n], "datatype": "FP32", "data": a},
        {"name": "INPUT1", "shape": [1, n], "datatype": "FP32", "data": b},
    ]}
    body = json.dumps(request, separators=(",", ":")).encode()
    out0 = (np.arange(n, dtype=np.float32) * np.float32(0.37)).reshape(1, n)
    out_list = out0.reshape(-1).tolist()
    response = {"model_name": "add_py", "model_version": "1", "outputs": [
        {"name": f"OUTPUT{i}", "datatype": "FP32", "shape": [1, n], "data": out_list}
        for i in (0, 1)]}
    typed = msgspec.json.Decoder(_Request)
    enc = msgspec.json.Encoder()
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("parse  json.loads", lambda: json.loads(body)),
        ("parse  msgspec (untyped)", lambda: msgspec.json.decode(body)),
        ("parse  msgspec (typed Structs)", lambda: typed.decode(body)),
        ("write  json.dumps (dict, data as lists)",
         lambda: json.dumps(response, separators=(",", ":")).encode()),
        ("write  msgspec (dict, data as lists)", lambda: enc.encode(response)),
        ("data   np.asarray(list).astype(float32)",
         lambda: np.asarray(a).astype(np.float32)),
        ("data   ndarray.tolist()", lambda: out0.reshape(-1).tolist()),
    ]
    if orjson is not None:
        rows[1:1] = [("parse  orjson", lambda: orjson.loads(body))]
        rows[5:5] = [("write  orjson (dict, data as lists)", lambda: orjson.dumps(response)),
                     ("write  orjson (data as numpy, OPT_SERIALIZE_NUMPY)",
                      lambda: orjson.dumps({**response, "outputs": [
                          {**o, "data": out0.reshape(-1)} for o in response["outputs"]]},
                          option=orjson.OPT_SERIALIZE_NUMPY))]
    header = decode_json(body)
    req, binary_default = parse_request("add_py", None, header, memoryview(b""))
    resp = InferenceResponse(model_name="add_py", model_version=1, outputs=[
        Tensor("OUTPUT0", DataType.FP32, (1, n), array=out0),
        Tensor("OUTPUT1", DataType.FP32, (1, n), array=out0)])
    rows += [
        ("ours   decode_json", lambda: decode_json(body)),
        ("ours   parse_request (decoded header)",
         lambda: parse_request("add_py", None, header, memoryview(b""))),
        ("ours   build_response", lambda: build_response(resp, req, binary_default)),
        ("ours   encode_json (the response dict)", lambda: encode_json(response)),
    ]
    print(f"request {len(body)} bytes, {n} elements per input")
    for label, fn in rows:
        print(f"{label:55s} {best_us(fn, args.number):8.2f} us")


if __name__ == "__main__":
    main()
