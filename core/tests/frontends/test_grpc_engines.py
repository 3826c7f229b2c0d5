"""Each gRPC engine imports what it needs when it starts: without grpcio the native engine
serves and the grpcio engine answers why it cannot start."""

from __future__ import annotations

import asyncio
import sys

import pytest

from triton_core.errors import TritonError
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.testing import free_port, make_server


def test_the_grpcio_engine_without_grpcio_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # an import of grpcio fails, as if not installed
    server = make_server(tmp_path)
    front = GrpcFrontEnd(server, "127.0.0.1", free_port(), engine="grpcio")
    with pytest.raises(TritonError, match="--grpc-engine grpcio needs grpcio: .*grpc"):
        asyncio.run(front.start())


def test_the_native_engine_starts_without_grpcio(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)

    async def start_and_stop() -> int:
        front = GrpcFrontEnd(make_server(tmp_path), "127.0.0.1", 0, engine="h2")
        await front.start()
        await front.stop(0)
        return front.port

    assert asyncio.run(start_and_stop()) > 0
