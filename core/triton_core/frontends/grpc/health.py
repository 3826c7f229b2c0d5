"""grpc.health.v1.Health/Check, hand-written so the core needs no grpcio-health-checking.

HealthCheckRequest {string service = 1}; HealthCheckResponse {ServingStatus status = 1}
with UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3. Both messages are tiny, so
they are encoded and decoded here directly in protobuf's wire format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..restricted import HEALTH_SERVICE
from .call import abort
from .status import StatusCode

UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3
SERVICE_NAME = HEALTH_SERVICE


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def decode_request(data: bytes) -> str:
    """The `service` field of a HealthCheckRequest (unknown fields skipped)."""
    pos = 0
    service = ""
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            n, pos = _varint(data, pos)
            if field == 1:
                service = data[pos:pos + n].decode("utf-8", errors="replace")
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("unsupported wire type")
    return service


def encode_response(status: int) -> bytes:
    return b"" if status == 0 else bytes((0x08, status))


def encode_request(service: str = "") -> bytes:
    b = service.encode("utf-8")
    if not b:
        return b""
    assert len(b) < 128
    return bytes((0x0A, len(b))) + b


def decode_response(data: bytes) -> int:
    pos = 0
    status = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key == 0x08:
            status, pos = _varint(data, pos)
        else:
            raise ValueError("unexpected field in HealthCheckResponse")
    return status


def check_method(status_of: Callable[[str], int]) -> Callable[[str, Any], Awaitable[int]]:
    """Health/Check as a servicer method; status_of(service) gives the ServingStatus."""

    async def check(request: str, context: Any) -> int:
        status = status_of(request)
        if status == SERVICE_UNKNOWN:
            await abort(context, StatusCode.NOT_FOUND, f"unknown service '{request}'")
        return status

    return check


def health_handler(status_of: Callable[[str], int]) -> Any:
    """A generic handler (grpc.GenericRpcHandler) for Health/Check on grpc.aio."""
    import grpc

    handler = grpc.unary_unary_rpc_method_handler(
        check_method(status_of), request_deserializer=decode_request,
        response_serializer=encode_response)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {"Check": handler})
