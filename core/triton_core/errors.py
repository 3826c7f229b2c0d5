"""Triton's error codes and the one exception type that carries them."""

from __future__ import annotations

import enum
import logging


class ErrorCode(enum.Enum):
    """TRITONSERVER_Error codes, with the HTTP and gRPC status each maps to."""

    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self, 400)

    @property
    def grpc_status_name(self) -> str:
        """Name of the grpc.StatusCode member (kept as text: the core has no grpc import)."""
        return _GRPC_STATUS[self]


_HTTP_STATUS = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
}

_GRPC_STATUS = {
    ErrorCode.UNKNOWN: "UNKNOWN",
    ErrorCode.INTERNAL: "INTERNAL",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.INVALID_ARG: "INVALID_ARGUMENT",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.UNSUPPORTED: "UNIMPLEMENTED",
    ErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    ErrorCode.CANCELLED: "CANCELLED",
}


class TritonError(Exception):
    """An error with a Triton code; front ends turn it into a status and body."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"TritonError({self.code.value}, {self.message!r})"

    @classmethod
    def invalid_arg(cls, message: str) -> TritonError:
        return cls(ErrorCode.INVALID_ARG, message)

    @classmethod
    def not_found(cls, message: str) -> TritonError:
        return cls(ErrorCode.NOT_FOUND, message)

    @classmethod
    def unavailable(cls, message: str) -> TritonError:
        return cls(ErrorCode.UNAVAILABLE, message)

    @classmethod
    def unsupported(cls, message: str) -> TritonError:
        return cls(ErrorCode.UNSUPPORTED, message)

    @classmethod
    def internal(cls, message: str) -> TritonError:
        return cls(ErrorCode.INTERNAL, message)


def as_triton_error(exc: BaseException, where: str) -> TritonError:
    """The TritonError a client sees for ``exc``: itself when it is one, else INTERNAL
    "<type>: <message>". An unexpected exception is a bug somewhere: its traceback is logged
    here, once, with ``where`` (what was running)."""
    if isinstance(exc, TritonError):
        return exc
    logging.getLogger("triton_core").error("%s failed", where, exc_info=exc)
    return TritonError.internal(f"{type(exc).__name__}: {exc}")
