"""The model version of a URL or a gRPC message, read as Triton reads it (both front ends)."""

from __future__ import annotations

from .errors import TritonError


def model_version(text: str | None) -> int | None:
    """'' / None / -1: the newest ready version; else an integer >= 0.

    The errors carry Triton's words (GetModelVersionFromString): its clients and examples
    match on them.
    """
    if not text:
        return None
    try:
        v = int(text)
    except ValueError:
        raise TritonError.invalid_arg(
            f"failed to get model version from specified version string '{text}' "
            "(details: not an integer), version should be an integral value > 0") from None
    if v == -1:
        return None
    if v < 0:
        raise TritonError.invalid_arg(
            f"invalid model version specified '{text}' , version should be an integral value > 0")
    return v
