"""POSIX shared-memory regions over the C layer, with each platform's name rules.

Why not ``multiprocessing.shared_memory``: before Python 3.13 every
``SharedMemory(name)`` attach registers the region with the resource tracker,
which unlinks it when this process exits -- destroying a region the *client*
owns. So client regions are only ever attached here, through shm_open/mmap in
the C layer; ``refuse_multiprocessing_attach`` documents and enforces that.

Mappings never dangle: the pointer is owned by a cffi ``gc`` object that every
exported view keeps alive, so ``unmap()`` drops the region's own hold and the
pages go away when the last view of them does (immediately when there is none).
"""

from __future__ import annotations

import errno as _errno
import os
import sys
from typing import Any, Self

from ..errors import ErrorCode, TritonError
from . import _native

APPLE_NAME_MAX = 31  # PSHMNAMLEN on macOS, the leading slash included


class SharedMemoryError(OSError):
    """An OS call on a shared-memory object failed; carries errno, its text and the name."""

    def __init__(self, err: int, action: str, name: str) -> None:
        super().__init__(err, f"{action} '{name}': {os.strerror(err)}", name)
        self.action = action
        self.name = name

    def to_triton(
        self, message: str | None = None, code: ErrorCode = ErrorCode.INTERNAL
    ) -> TritonError:
        """The same failure as a TritonError (front ends speak only TritonError)."""
        return TritonError(code, message or str(self.strerror))


class RegionTooSmall(ValueError):
    """The object exists but is smaller than the caller needs (nothing was mapped)."""

    def __init__(self, name: str, size: int, needed: int) -> None:
        super().__init__(
            f"shared memory object '{name}' has {size} bytes, {needed} needed"
        )
        self.name = name
        self.size = size
        self.needed = needed


def _lib() -> Any:
    _native.require()
    return _native.lib


def is_apple() -> bool:
    return sys.platform == "darwin"


def os_name(key: str, apple: bool | None = None) -> str:
    """The name handed to shm_open for ``key`` under one platform's rules.

    Pure function (no system call), so macOS rules are testable anywhere:
    macOS names get a leading slash and, past 31 bytes, become "/" + a 13-byte
    prefix + "_" + 16 hex digits of an FNV-1a hash of the whole name
    (deterministic, so every process derives the same name). Linux names pass
    through unchanged (glibc strips leading slashes itself).
    """
    if apple is None:
        apple = is_apple()
    raw = key.encode("utf-8")
    if not raw or b"\0" in raw:
        raise ValueError(f"invalid shared memory key {key!r}")
    ffi, lib = _native.ffi, _lib()
    out = ffi.new("char[]", len(raw) + APPLE_NAME_MAX + 2)
    n = lib.tc_shm_name(raw, int(apple), out, len(out))
    if n < 0:
        raise ValueError(f"invalid shared memory key {key!r}")
    return ffi.string(out, n).decode("utf-8")


def apple_name(key: str) -> str:
    """macOS's rule for ``key`` (see os_name), whatever this machine is."""
    return os_name(key, apple=True)


def client_key_candidates(key: str, apple: bool | None = None) -> list[str]:
    """OS names to try, in order, for a key a client registered.

    The key as given (C clients and tritonclient < 2.52 shm_open the key), then
    "/" + key (tritonclient >= 2.52 uses Python's SharedMemory, which prepends a
    slash: key "/x" names "//x", which glibc folds but macOS may not).
    """
    names: list[str] = []
    for cand in (key, "/" + key):
        name = os_name(cand, apple)
        if name not in names:
            names.append(name)
    return names


def _raise_errno(action: str, name: str) -> None:
    err = _native.ffi.errno or _errno.EIO
    raise SharedMemoryError(err, action, name)


class SharedMemoryRegion:
    """One mapped POSIX shared-memory object (the whole object, mapped at offset 0)."""

    def __init__(self, name: str, size: int, ptr: Any, writable: bool) -> None:
        # Use create() / open(); this takes ownership of a mapping made by them.
        self.name = name  # the OS name
        self._size = size
        self._ptr = ptr  # cffi gc pointer: munmap when the last reference goes
        self.writable = writable
        self._view: memoryview | None = None  # the whole mapping; slices are handed out
        self._closed = False

    # -- construction -------------------------------------------------------

    @classmethod
    def create(
        cls, key: str, size: int, *, exclusive: bool = True
    ) -> SharedMemoryRegion:
        """Create (or with exclusive=False, open or create) and map an object of ``size`` bytes.

        The object is sized with one ftruncate (macOS allows only one); an
        existing object smaller than ``size`` cannot grow on macOS.
        """
        if size <= 0:
            raise ValueError(f"shared memory size must be positive, got {size}")
        flags = _lib().TC_SHM_CREATE | (_lib().TC_SHM_EXCL if exclusive else 0)
        return cls._open_map(os_name(key), flags, size, True)

    @classmethod
    def open(cls, key: str, *, writable: bool = True) -> SharedMemoryRegion:
        """Map an existing object by our own name rule (no client-key fallback)."""
        flags = 0 if writable else _lib().TC_SHM_READONLY
        return cls._open_map(os_name(key), flags, 0, writable)

    @classmethod
    def attach_client(cls, key: str, *, min_size: int = 0) -> SharedMemoryRegion:
        """Map a region a client created, trying each of client_key_candidates(key).

        The object's real size is checked against ``min_size`` before anything
        is mapped (RegionTooSmall).
        """
        last: SharedMemoryError | None = None
        for name in client_key_candidates(key):
            try:
                return cls._open_map(name, 0, 0, True, min_size=min_size)
            except SharedMemoryError as exc:
                if exc.errno != _errno.ENOENT:
                    raise
                last = exc
        assert last is not None
        raise last

    @classmethod
    def _open_map(
        cls, name: str, flags: int, size: int, writable: bool, *, min_size: int = 0
    ) -> SharedMemoryRegion:
        ffi, lib = _native.ffi, _lib()
        raw = name.encode("utf-8")
        size_out = ffi.new("uint64_t *")
        fd = lib.tc_shm_open(raw, flags, size, size_out)
        if fd < 0:
            _raise_errno("shm_open", name)
        try:
            real = int(size_out[0])
            if real < min_size:
                raise RegionTooSmall(name, real, min_size)
            if real == 0:
                ptr = None  # mmap refuses length 0; an empty object has nothing to map
            else:
                addr = lib.tc_mmap(fd, real, int(writable))
                if addr == ffi.NULL:
                    _raise_errno("mmap", name)
                ptr = ffi.gc(ffi.cast("uint8_t *", addr), _unmapper(real), size=real)
        finally:
            lib.tc_close(fd)  # the mapping keeps the object alive; no fd is kept
        return cls(name, real, ptr, writable)

    # -- use ----------------------------------------------------------------

    @property
    def size(self) -> int:
        """The object's size as the OS reports it (macOS may round it to a page)."""
        return self._size

    @property
    def mapped(self) -> bool:
        """False once unmap() ran (views made before may still hold the pages)."""
        return not self._closed

    def buffer(self, offset: int = 0, size: int | None = None) -> memoryview:
        """A memoryview of ``size`` bytes at ``offset`` (default: to the end); no copy.

        The view keeps the mapping alive even past unmap().
        """
        if self._closed:
            raise ValueError(f"shared memory region '{self.name}' is unmapped")
        if size is None:
            size = self._size - offset if 0 <= offset <= self._size else -1
        if offset < 0 or size < 0 or offset > self._size or size > self._size - offset:
            raise ValueError(
                f"offset {offset} + size {size} outside shared memory region "
                f"'{self.name}' of {self._size} bytes"
            )
        mv = self._view
        if mv is None:
            if self._ptr is None:
                return memoryview(bytearray(0))
            # made once: a view per request cost a cffi buffer and two memoryviews
            mv = memoryview(_native.ffi.buffer(self._ptr, self._size))
            if not self.writable:
                mv = mv.toreadonly()
            self._view = mv
        return mv[offset : offset + size]

    def unmap(self) -> None:
        """Drop this region's hold on the mapping (munmap once no view remains). Idempotent."""
        self._ptr = None
        self._view = None
        self._closed = True

    close = unmap

    def unlink(self) -> None:
        """Remove the name (existing mappings stay valid until unmapped)."""
        unlink(self.name, os_rules=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmap()

    def __repr__(self) -> str:
        state = "unmapped" if self._closed else "mapped"
        return f"SharedMemoryRegion({self.name!r}, size={self._size}, {state})"


def _unmapper(size: int) -> Any:
    def unmap(ptr: Any) -> None:
        _native.lib.tc_munmap(ptr, size)

    return unmap


def unlink(key: str, *, os_rules: bool = True) -> None:
    """shm_unlink the object for ``key`` (our name rule applied unless os_rules=False)."""
    name = os_name(key) if os_rules else key
    if _lib().tc_shm_unlink(name.encode("utf-8")) != 0:
        _raise_errno("shm_unlink", name)


def page_size() -> int:
    return int(_lib().tc_page_size())


def refuse_multiprocessing_attach(key: str) -> None:
    """Always raise: client regions are never attached via multiprocessing.shared_memory.

    On Python < 3.13 ``SharedMemory(name)`` registers the attach with the
    resource tracker, which unlinks the client's region when we exit; 3.13's
    ``track=False`` fixes that, but one code path (the C layer) is simpler.
    """
    why = (
        "its resource tracker would unlink the client's region at exit"
        if sys.version_info < (3, 13)
        else "triton-core attaches client regions through its C layer only"
    )
    raise TritonError.unsupported(
        f"refusing to attach shared memory region '{key}' through "
        f"multiprocessing.shared_memory: {why}"
    )
