"""--grpc-restricted-protocol: every RPC of a restricted category needs the header, on both
engines, as in Triton (src/grpc/grpc_server.cc, whose newer server restricts
grpc.health.v1 Check under "health"); RPCs of other categories are untouched."""

from __future__ import annotations

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.frontends.restricted import CATEGORIES, grpc_category
from triton_core.testing import LoopThread

SERVICE = "/inference.GRPCInferenceService"
# (method path, category) for every RPC the server offers
RPCS = [
    (f"{SERVICE}/ServerLive", "health"),
    (f"{SERVICE}/ServerReady", "health"),
    (f"{SERVICE}/ModelReady", "health"),
    ("/grpc.health.v1.Health/Check", "health"),
    (f"{SERVICE}/ServerMetadata", "metadata"),
    (f"{SERVICE}/ModelMetadata", "metadata"),
    (f"{SERVICE}/ModelInfer", "inference"),
    (f"{SERVICE}/ModelStreamInfer", "inference"),
    (f"{SERVICE}/ModelConfig", "model-config"),
    (f"{SERVICE}/ModelStatistics", "statistics"),
    (f"{SERVICE}/RepositoryIndex", "model-repository"),
    (f"{SERVICE}/RepositoryModelLoad", "model-repository"),
    (f"{SERVICE}/RepositoryModelUnload", "model-repository"),
    (f"{SERVICE}/SystemSharedMemoryStatus", "shared-memory"),
    (f"{SERVICE}/SystemSharedMemoryRegister", "shared-memory"),
    (f"{SERVICE}/SystemSharedMemoryUnregister", "shared-memory"),
    (f"{SERVICE}/CudaSharedMemoryStatus", "shared-memory"),
    (f"{SERVICE}/CudaSharedMemoryRegister", "shared-memory"),
    (f"{SERVICE}/CudaSharedMemoryUnregister", "shared-memory"),
    (f"{SERVICE}/TraceSetting", "trace"),
    (f"{SERVICE}/LogSettings", "logging"),
]
KEY, VALUE = "x-admin-key", "s3cret"


def test_every_rpc_has_its_category_in_the_shared_table():
    methods = {f"{SERVICE}/{m.name}"
               for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    assert methods <= {path for path, _ in RPCS}, "an RPC is missing from RPCS"
    for path, category in RPCS:
        assert grpc_category(path) == category, path
    assert set(CATEGORIES) == {c for _, c in RPCS}


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def restricted_urls(http_server, request):
    """One front end per category on one engine, each restricting only that category."""
    loop = LoopThread()
    fronts = {}
    try:
        for c in CATEGORIES:
            front = GrpcFrontEnd(http_server, "127.0.0.1", 0, engine=request.param,
                                 restricted={c: (KEY, VALUE)})
            loop.run(front.start())
            fronts[c] = front
        yield {c: f"127.0.0.1:{f.port}" for c, f in fronts.items()}
    finally:
        for front in fronts.values():
            loop.run(front.stop(0))
        loop.close()


def _call(url: str, path: str, metadata: tuple) -> tuple[grpc.StatusCode, str]:
    """The status of a call with an empty request (every field at its default)."""
    with grpc.insecure_channel(url) as channel:
        try:
            if path.endswith("/ModelStreamInfer"):
                list(channel.stream_stream(path)(iter(()), metadata=metadata, timeout=10))
            else:
                channel.unary_unary(path)(b"", metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def _restricted(status: tuple[grpc.StatusCode, str]) -> bool:
    code, details = status
    return code == grpc.StatusCode.UNAVAILABLE and f"expecting header '{KEY}'" in details


@pytest.mark.parametrize("category", sorted(CATEGORIES))
@pytest.mark.parametrize("path,rpc_category", RPCS, ids=[p.rsplit("/", 1)[1] for p, _ in RPCS])
def test_a_restricted_category_needs_the_header_on_every_rpc(restricted_urls, category, path,
                                                            rpc_category):
    url = restricted_urls[category]
    status = _call(url, path, ())
    assert _restricted(status) == (rpc_category == category), status
    if rpc_category == category:
        assert "This protocol is restricted" in status[1]
        status = _call(url, path, ((KEY, VALUE),))
        assert not _restricted(status), status
        status = _call(url, path, ((KEY, "wrong"),))
        assert _restricted(status), status
