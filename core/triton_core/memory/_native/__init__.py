"""triton-core's C layer (cffi, API mode): see native.h for what it offers.

``ffi`` and ``lib`` are the raw binding; the helpers here add the Python-side
checks. The extension is built by ``pip install`` (setup.py) or in place by
``python triton_core/memory/_native/build.py``; ``AVAILABLE`` says whether it loaded,
so pure-Python fallbacks (bytes_codec) can decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from ._triton_native import ffi, lib
except ImportError as _exc:  # not built: callers fall back or raise NativeUnavailable
    ffi = None  # type: ignore[assignment]
    lib = None  # type: ignore[assignment]
    AVAILABLE = False
    IMPORT_ERROR: ImportError | None = _exc
else:
    AVAILABLE = True
    IMPORT_ERROR = None

Buffer = Any  # anything exporting the buffer protocol


class NativeUnavailable(ImportError):
    """The compiled extension is missing (triton-core installed without building it)."""


def require() -> None:
    """Raise a clear error when the extension was not built."""
    if not AVAILABLE:
        from ...install_hint import pip_install

        raise NativeUnavailable(
            "triton_core.memory._native is not built: reinstall triton-core with a C compiler "
            f"({pip_install('triton-core') or 'pip install ./core'}) or run "
            f"'python triton_core/memory/_native/build.py' in core/ ({IMPORT_ERROR})"
        )


def _lengths(bufs: Sequence[Any]) -> tuple[list[Any], Any]:
    # from_buffer pins each buffer (no copy) for the duration of the C call.
    ptrs = [ffi.from_buffer(b) for b in bufs]
    lens = ffi.new("uint64_t[]", [len(p) for p in ptrs])
    return ptrs, lens


def gather_into(dst: Buffer, srcs: Sequence[Buffer]) -> int:
    """Copy ``srcs`` back to back into the writable ``dst``; return the bytes copied.

    The copy runs without the GIL. Raises ValueError (nothing written) when the
    sources do not fit.
    """
    require()
    out = ffi.from_buffer(dst, require_writable=True)
    ptrs, lens = _lengths(srcs)
    arr = ffi.new("const uint8_t *[]", [ffi.cast("const uint8_t *", p) for p in ptrs])
    n = lib.tc_gather(ffi.cast("uint8_t *", out), len(out), arr, lens, len(ptrs))
    if n < 0:
        total = sum(lens)
        raise ValueError(
            f"gather: {total} bytes from {len(ptrs)} buffers do not fit {len(out)}"
        )
    return int(n)


def scatter_from(src: Buffer, dsts: Sequence[Buffer]) -> int:
    """Split ``src`` into the writable ``dsts``, each filled to its length; return bytes copied.

    The copy runs without the GIL. Raises ValueError (nothing written) when
    ``src`` is shorter than the destinations together.
    """
    require()
    inp = ffi.from_buffer(src)
    ptrs = [ffi.from_buffer(d, require_writable=True) for d in dsts]
    lens = ffi.new("uint64_t[]", [len(p) for p in ptrs])
    arr = ffi.new("uint8_t *[]", [ffi.cast("uint8_t *", p) for p in ptrs])
    n = lib.tc_scatter(ffi.cast("const uint8_t *", inp), len(inp), arr, lens, len(ptrs))
    if n < 0:
        total = sum(lens)
        raise ValueError(f"scatter: source of {len(inp)} bytes is shorter than {total}")
    return int(n)


__all__ = [
    "AVAILABLE",
    "NativeUnavailable",
    "ffi",
    "gather_into",
    "lib",
    "require",
    "scatter_from",
]
