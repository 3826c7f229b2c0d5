"""Shared bits of the HTTP end-to-end tests: a test repository, raw HTTP, error checks."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from expr_backend import ADD_SUB, IDENTITY_BYTES, write_model

CLASSIFY = """
backend: "expr"
max_batch_size: 4
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [5] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [5] label_filename: "labels.txt" },
        { name: "OUTPUT1" data_type: TYPE_INT32 dims: [5] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0" } }
parameters { key: "OUTPUT1" value { string_value: "(INPUT0 * 10).astype(np.int32)" } }
"""
LABELS = ["cat", "dog", "bird", "fish", "frog"]

HALF = """
backend: "expr"
max_batch_size: 0
input [{ name: "INPUT0" data_type: TYPE_FP16 dims: [3] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP16 dims: [3] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0 * 2" } }
"""

# one input: the model for raw requests (Inference-Header-Content-Length: 0)
SINGLE = """
backend: "expr"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0 * 2" } }
"""

ALL_VERSIONS = ADD_SUB + "version_policy { all {} }"


def build_repo(root: Path) -> Path:
    write_model(root, "add", ADD_SUB)
    write_model(root, "multi", ALL_VERSIONS, versions=(1, 2))
    write_model(root, "strings", IDENTITY_BYTES)
    d = write_model(root, "cls", CLASSIFY)
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    write_model(root, "half", HALF)
    write_model(root, "single", SINGLE)
    return root


def request(addr: str, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request on a fresh connection: (status, lower-cased headers, body)."""
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def error_of(body: bytes) -> str:
    """The message of an error body, which must be exactly {"error": "<message>"}."""
    obj = json.loads(body)
    assert isinstance(obj, dict) and list(obj) == ["error"], obj
    assert isinstance(obj["error"], str) and obj["error"]
    return obj["error"]


def add_inputs(batch: int = 1, binary: bool = True):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.full((batch, 16), 3, np.int32)
    ins = [httpclient.InferInput("INPUT0", [batch, 16], "INT32"),
           httpclient.InferInput("INPUT1", [batch, 16], "INT32")]
    ins[0].set_data_from_numpy(a, binary_data=binary)
    ins[1].set_data_from_numpy(b, binary_data=binary)
    return a, b, ins


def assert_serves(addr: str) -> None:
    """The server still answers: health, and an inference on `add`."""
    c = httpclient.InferenceServerClient(addr)
    try:
        assert c.is_server_live()
        a, b, ins = add_inputs()
        res = c.infer("add", ins)
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    finally:
        c.close()
