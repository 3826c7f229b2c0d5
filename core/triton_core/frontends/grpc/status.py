"""gRPC's status codes (grpc/doc/statuscodes.md) without grpcio: the native engine and the
servicer use these; grpc.aio's context is given grpcio's own (``grpcio()``)."""

from __future__ import annotations

import enum
from typing import Any


class StatusCode(enum.Enum):
    """Names and values as grpcio's grpc.StatusCode: (number, words)."""

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")

    @property
    def number(self) -> int:
        return self.value[0]

    def grpcio(self) -> Any:
        """grpcio's grpc.StatusCode of the same name (imports grpcio: its engine only)."""
        import grpc

        return grpc.StatusCode[self.name]
