"""Tensor descriptors laid out in shared memory (the C struct tc_tensor_desc).

The server and the python backend's worker processes describe each request
and response tensor with one fixed 152-byte record in the shared arena: name,
Triton data type, shape and where the data lies in the arena. Readers copy a
record out before checking it (the other process may still be writing), and
the check runs in C (tc_desc_check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..dtypes import DataType
from ..errors import TritonError
from . import _native

NAME_BYTES = 64  # including the terminating NUL
MAX_DIMS = 8
DESCRIPTOR_SIZE = 152  # checked against the C struct in tests
DESCRIPTOR_ALIGN = 8

# TRITONSERVER_DataType values (tritonserver.h), so records mean the same to C code.
DTYPE_CODES: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.UINT8: 2,
    DataType.UINT16: 3,
    DataType.UINT32: 4,
    DataType.UINT64: 5,
    DataType.INT8: 6,
    DataType.INT16: 7,
    DataType.INT32: 8,
    DataType.INT64: 9,
    DataType.FP16: 10,
    DataType.FP32: 11,
    DataType.FP64: 12,
    DataType.BYTES: 13,
    DataType.BF16: 14,
}
_DTYPES = {code: dt for dt, code in DTYPE_CODES.items()}

_CHECK_ERRORS = {
    -1: "name is not NUL-terminated",
    -2: "ndim outside 0..8",
    -3: "negative dimension",
    -4: "data lies outside the arena",
    -5: "unknown data type",
}


@dataclass(frozen=True)
class TensorDescriptor:
    name: str
    dtype: DataType
    shape: tuple[int, ...]
    byte_offset: int
    byte_size: int


def _record(buf: Any, offset: int, writable: bool) -> Any:
    _native.require()
    ffi = _native.ffi
    base = ffi.from_buffer("uint8_t[]", buf, require_writable=writable)
    if offset < 0 or offset % DESCRIPTOR_ALIGN or offset > len(base) - DESCRIPTOR_SIZE:
        raise TritonError.invalid_arg(
            f"tensor descriptor at offset {offset} does not fit an aligned record in {len(base)} bytes"
        )
    return ffi.cast("tc_tensor_desc *", base + offset), base


def write_descriptor(buf: Any, offset: int, desc: TensorDescriptor) -> None:
    """Write ``desc`` as one record at ``offset`` (8-byte aligned) of the writable ``buf``."""
    name = desc.name.encode("utf-8")
    if len(name) >= NAME_BYTES or b"\0" in name:
        raise TritonError.invalid_arg(
            f"tensor name '{desc.name}' does not fit a descriptor ({NAME_BYTES - 1} bytes at most)"
        )
    if len(desc.shape) > MAX_DIMS or any(d < 0 for d in desc.shape):
        raise TritonError.invalid_arg(
            f"tensor '{desc.name}': shape {list(desc.shape)} needs at most {MAX_DIMS} non-negative dims"
        )
    if desc.byte_offset < 0 or desc.byte_size < 0:
        raise TritonError.invalid_arg(
            f"tensor '{desc.name}': negative byte offset or size"
        )
    rec, _keep = _record(buf, offset, writable=True)
    # Build the record aside and copy it in whole: readers never see a
    # half-cleared name.
    tmp = _native.ffi.new("tc_tensor_desc *")
    tmp.name = name
    tmp.dtype = DTYPE_CODES[desc.dtype]
    tmp.ndim = len(desc.shape)
    for i, d in enumerate(desc.shape):
        tmp.shape[i] = d
    tmp.byte_offset = desc.byte_offset
    tmp.byte_size = desc.byte_size
    _native.ffi.memmove(rec, tmp, DESCRIPTOR_SIZE)


def read_descriptor(
    buf: Any, offset: int, arena_size: int | None = None
) -> TensorDescriptor:
    """Read and check the record at ``offset``; its data must lie within ``arena_size`` bytes
    (default: len(buf))."""
    rec, base = _record(buf, offset, writable=False)
    ffi, lib = _native.ffi, _native.lib
    copy = ffi.new("tc_tensor_desc *")
    ffi.memmove(copy, rec, DESCRIPTOR_SIZE)  # check what we use, not what may change
    limit = len(base) if arena_size is None else arena_size
    rc = lib.tc_desc_check(copy, limit)
    if rc != lib.TC_DESC_OK:
        raise TritonError.invalid_arg(
            f"bad tensor descriptor at offset {offset}: {_CHECK_ERRORS.get(rc, rc)}"
        )
    return TensorDescriptor(
        name=ffi.string(copy.name).decode("utf-8", errors="replace"),
        dtype=_DTYPES[copy.dtype],
        shape=tuple(copy.shape[i] for i in range(copy.ndim)),
        byte_offset=int(copy.byte_offset),
        byte_size=int(copy.byte_size),
    )


def write_descriptors(buf: Any, offset: int, descs: Sequence[TensorDescriptor]) -> int:
    """Write records back to back from ``offset``; return the bytes used."""
    for i, desc in enumerate(descs):
        write_descriptor(buf, offset + i * DESCRIPTOR_SIZE, desc)
    return len(descs) * DESCRIPTOR_SIZE


def read_descriptors(
    buf: Any, offset: int, count: int, arena_size: int | None = None
) -> list[TensorDescriptor]:
    return [
        read_descriptor(buf, offset + i * DESCRIPTOR_SIZE, arena_size)
        for i in range(count)
    ]
