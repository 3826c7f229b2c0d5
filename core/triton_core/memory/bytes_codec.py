"""Triton's BYTES wire layout: per element a 4-byte little-endian length, then the bytes.

serialize_bytes / deserialize_bytes use the C codec in triton_core.memory._native when it
is built; the _py functions are the reference behaviour and the fallback. Both
raise the same errors with the same messages.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import TritonError
from . import _native

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
    if _native.AVAILABLE:
        return _serialize_native(array)
    return _serialize_py(array)


def deserialize_bytes(
    buffer: bytes | memoryview, count: int | None = None
) -> np.ndarray:
    """Parse Triton's BYTES layout into a 1-D object array of bytes.

    Bounds are checked: a length prefix that runs past the buffer is INVALID_ARG.
    When count is given the buffer must hold exactly that many elements.
    """
    if _native.AVAILABLE:
        return _deserialize_native(buffer, count)
    return _deserialize_py(buffer, count)


def check_bytes(buffer: bytes | memoryview, count: int) -> None:
    """Check a BYTES buffer holds exactly `count` well-formed elements, building no objects
    (a request is checked before anything per element is made: decoding waits for a reader)."""
    if _native.AVAILABLE:
        mv = memoryview(buffer).cast("B")
        ffi, lib = _native.ffi, _native.lib
        ei, ev = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        n = lib.tc_bytes_scan(ffi.from_buffer("uint8_t[]", mv), len(mv), ffi.NULL, ffi.NULL, 0,
                              ei, ev)
        _scan_error(n, ei[0], ev[0], len(mv))
    else:
        n = _count_py(buffer)
    if n != count:
        raise _count_error(n, count)


def _count_py(buffer: bytes | memoryview) -> int:
    mv = memoryview(buffer).cast("B")
    total = len(mv)
    n = pos = 0
    while pos < total:
        if pos + 4 > total:
            raise TritonError.invalid_arg(
                f"BYTES element {n}: length prefix runs past the buffer ({total} bytes)")
        (size,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if size > total - pos:
            raise TritonError.invalid_arg(
                f"BYTES element {n}: length {size} runs past the buffer ({total} bytes)")
        pos += size
        n += 1
    return n


def _object_array(items: list[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _count_error(got: int, expected: int) -> TritonError:
    return TritonError.invalid_arg(
        f"unexpected number of BYTES elements: got {got}, expected {expected}"
    )


# -- native: C does the byte loops, Python builds objects with C-speed builtins --


# Past this mean element size the copy dominates, and one join beats the C
# pass's extra copy into its output buffer (measured: bench/bench_bytes_codec.py).
_JOIN_MEAN_SIZE = 256


def _serialize_native(array: np.ndarray) -> bytes:
    items = np.asarray(array, dtype=object).reshape(-1).tolist()
    n = len(items)
    if not n:
        return b""
    kinds = set(map(type, items))
    if kinds == {bytes}:
        parts = items
    elif kinds == {str}:
        parts = [s.encode("utf-8") for s in items]
    else:
        parts = list(map(_as_bytes, items))
    lens = np.fromiter(map(len, parts), dtype=np.uint64, count=n)
    total = int(lens.sum())
    if lens.max() > 0xFFFFFFFF:
        i = int(np.argmax(lens > 0xFFFFFFFF))
        raise TritonError.invalid_arg(
            f"BYTES element {i}: {len(parts[i])} bytes do not fit a 4-byte length prefix"
        )
    if total >= _JOIN_MEAN_SIZE * n:
        # Large elements: interleave the prefixes and join once (a single copy).
        seq: list[bytes] = [b""] * (2 * n)
        seq[0::2] = map(_LEN.pack, lens.tolist())
        seq[1::2] = parts
        return b"".join(seq)
    data = b"".join(parts)
    out = bytearray(total + 4 * n)
    ffi, lib = _native.ffi, _native.lib
    err = ffi.new("uint64_t *")
    written = lib.tc_bytes_serialize(
        ffi.from_buffer("uint8_t[]", data),
        len(data),
        ffi.from_buffer("uint64_t[]", lens),
        n,
        ffi.from_buffer("uint8_t[]", out, require_writable=True),
        len(out),
        err,
    )
    if written != len(out):  # cannot happen: sizes were computed above
        raise TritonError.internal(
            f"BYTES serialize wrote {written} of {len(out)} bytes"
        )
    return bytes(out)


def _scan_error(n: int, index: int, value: int, total: int) -> None:
    lib = _native.lib
    if n == lib.TC_BYTES_ETRUNC_PREFIX:
        raise TritonError.invalid_arg(
            f"BYTES element {index}: length prefix runs past the buffer ({total} bytes)"
        )
    if n == lib.TC_BYTES_ETRUNC_DATA:
        raise TritonError.invalid_arg(
            f"BYTES element {index}: length {value} runs past the buffer ({total} bytes)"
        )


def _deserialize_native(buffer: bytes | memoryview, count: int | None) -> np.ndarray:
    mv = memoryview(buffer).cast("B")
    total = len(mv)
    ffi, lib = _native.ffi, _native.lib
    src = ffi.from_buffer("uint8_t[]", mv)
    ei, ev = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    n = lib.tc_bytes_scan(src, total, ffi.NULL, ffi.NULL, 0, ei, ev)
    _scan_error(n, ei[0], ev[0], total)
    if count is not None and n != count:
        raise _count_error(n, count)
    starts = np.empty(n, dtype=np.uint64)
    ends = np.empty(n, dtype=np.uint64)
    if n:
        got = lib.tc_bytes_scan(
            src,
            total,
            ffi.from_buffer("uint64_t[]", starts, require_writable=True),
            ffi.from_buffer("uint64_t[]", ends, require_writable=True),
            n,
            ei,
            ev,
        )
        if got != n:  # the buffer changed under us (shared memory): refuse
            raise TritonError.invalid_arg(
                "BYTES buffer changed while it was being read"
            )
    data = buffer if type(buffer) is bytes else mv.tobytes()
    # Plain bytes slicing is the cheapest way to make n bytes objects (measured
    # faster than map(slice, ...)); C has already validated every bound.
    return _object_array([data[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])


# -- pure Python reference ---------------------------------------------------


def _serialize_py(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in np.asarray(array, dtype=object).reshape(-1):
        b = _as_bytes(item)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _deserialize_py(buffer: bytes | memoryview, count: int | None) -> np.ndarray:
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
        raise _count_error(len(items), count)
    return _object_array(items)
