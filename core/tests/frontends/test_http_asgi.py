"""The HTTP app as an ASGI application (how an ASGI server such as Ray Serve's proxy hosts
it) answers as it does on the project's own HTTP/1.1 server: same status, same body."""

from __future__ import annotations

import asyncio
import json

import pytest

from http_helpers import request
from triton_core.frontends.http.app import HttpFrontEnd

INFER = json.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}).encode()

CASES = [
    ("GET", "/v2/health/live", b""),
    ("GET", "/v2/health/ready", b""),
    ("GET", "/v2", b""),
    ("GET", "/v2/models/add", b""),
    ("GET", "/v2/models/add/config", b""),
    ("POST", "/v2/models/add/infer", INFER),
    ("POST", "/v2/models/add/infer", b"{not json"),
    ("POST", "/v2/models/nosuch/infer", INFER),
    ("GET", "/v2/models/add/infer", b""),
    ("GET", "/not/a/route", b""),
]


def _asgi(app: HttpFrontEnd, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    async def run() -> tuple[int, bytes]:
        sent: list[dict] = []
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(msg: dict) -> None:
            sent.append(msg)

        scope = {"type": "http", "method": method, "path": path, "query_string": b"",
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], out

    return asyncio.run(run())


@pytest.mark.parametrize("method,path,body", CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_asgi_answers_as_the_own_server(http_server, addr, method, path, body):
    app = HttpFrontEnd(http_server)
    status, out = _asgi(app, method, path, body)
    want_status, _, want = request(addr, method, path, body or None,
                                   {"Content-Type": "application/json"})
    assert (status, out) == (want_status, want)
