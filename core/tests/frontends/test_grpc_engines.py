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


def test_a_context_other_than_the_native_calls_gets_grpcios_codes(tmp_path):
    """grpc.aio's context, and Ray Serve's behind frontends/ray_serve.py, take grpcio's
    StatusCode: the servicer's status codes are converted for them."""
    import grpc

    from triton_core.frontends.grpc.service import InferenceServicer
    from triton_core.frontends.ray_serve import _RayContext
    from triton_core.protos import service_pb2 as pb

    class RayLike:
        code = details = None

        def set_code(self, code):
            self.code = code

        def set_details(self, details):
            self.details = details

    ray = RayLike()
    servicer = InferenceServicer(make_server(tmp_path))
    with pytest.raises(Exception, match="nothing"):
        asyncio.run(servicer.ModelMetadata(pb.ModelMetadataRequest(name="nothing"), _RayContext(ray)))
    assert ray.code is grpc.StatusCode.NOT_FOUND and "nothing" in ray.details
