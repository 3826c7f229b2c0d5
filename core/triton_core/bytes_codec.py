"""Triton's BYTES wire layout: per element a 4-byte little-endian length, then the bytes.

The native layer (triton_core._native) provides a faster codec; these functions
are the reference behaviour and the fallback when it is not built.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import TritonError

_LEN = struct.Struct("<I")


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview, np.bytes_)):
        return bytes(item)
    return str(item).encode("utf-8")


def serialize_bytes(array: np.ndarray) -> bytes:
    """Serialize an object/bytes/str array (row-major) into Triton's BYTES layout."""
    parts: list[bytes] = []
    for item in np.asarray(array, dtype=object).reshape(-1):
        b = _as_bytes(item)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(buffer: bytes | memoryview, count: int | None = None) -> np.ndarray:
    """Parse Triton's BYTES layout into a 1-D object array of bytes.

    Bounds are checked: a length prefix that runs past the buffer is INVALID_ARG.
    When count is given the buffer must hold exactly that many elements.
    """
    mv = memoryview(buffer).cast("B")
    total = len(mv)
    items: list[bytes] = []
    pos = 0
    while pos < total:
        if pos + 4 > total:
            raise TritonError.invalid_arg(
                f"BYTES element {len(items)}: length prefix runs past the buffer ({total} bytes)"
            )
        (n,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if n > total - pos:
            raise TritonError.invalid_arg(
                f"BYTES element {len(items)}: length {n} runs past the buffer ({total} bytes)"
            )
        items.append(bytes(mv[pos : pos + n]))
        pos += n
    if count is not None and len(items) != count:
        raise TritonError.invalid_arg(
            f"unexpected number of BYTES elements: got {len(items)}, expected {count}"
        )
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
