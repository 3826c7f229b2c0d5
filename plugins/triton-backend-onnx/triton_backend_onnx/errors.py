"""onnxruntime exceptions -> TritonError with Triton's codes, keeping ORT's message."""

from __future__ import annotations

from triton_core.errors import ErrorCode, TritonError

# onnxruntime.capi.onnxruntime_pybind11_state exception class names -> Triton codes.
_CODES = {
    "InvalidArgument": ErrorCode.INVALID_ARG,
    "InvalidProtobuf": ErrorCode.INVALID_ARG,
    "InvalidGraph": ErrorCode.INVALID_ARG,
    "NoModel": ErrorCode.INVALID_ARG,
    "NoSuchFile": ErrorCode.NOT_FOUND,
    "NotImplemented": ErrorCode.UNSUPPORTED,
    "ModelLoaded": ErrorCode.INTERNAL,
    "EPFail": ErrorCode.UNAVAILABLE,
}


def from_ort(exc: BaseException, prefix: str, default: ErrorCode = ErrorCode.INTERNAL) -> TritonError:
    """A TritonError for an exception raised by onnxruntime (or passed through it)."""
    if isinstance(exc, TritonError):
        return exc
    code = _CODES.get(type(exc).__name__, default)
    msg = str(exc).strip() or type(exc).__name__
    return TritonError(code, f"{prefix}: {msg}")
