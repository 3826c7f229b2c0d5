"""POSIX shared-memory regions over the C layer, with each platform's name rules.

Why not ``multiprocessing.shared_memory``: before Python 3.13 every
``SharedMemory(name)`` attach registers the region with the resource tracker,
which unlinks it when this process exits -- destroying a region the *client*
owns. So client regions are only ever attached here, through shm_open/mmap in
the C layer; ``refuse_multiprocessing_attach`` documents and enforces that.

Mappings never dangle: the pointer is owned by a cffi ``gc`` object that every
exported view keeps alive, so ``unmap()`` drops the region's own hold and the
pages go away when the last view of them does (immediately when there is none).

The server's own segments (every region made by ``create()``: the python
backend's arenas, the core's) are recorded by identity -- the object's
(st_dev, st_ino), or its name where the OS reports no inode (macOS) -- while
mapped, so the client shared-memory API can refuse them however they are named
(``is_server_segment``). A client region keeps its fd open (``attach_client``)
so its *current* size can be checked before each use: a client that truncates
its object after registering would otherwise turn the next access into SIGBUS.
"""

from __future__ import annotations

import errno as _errno
import os
import sys
import threading
from typing import Any, Self

import numpy as np

from ..errors import ErrorCode, TritonError
from . import _native

APPLE_NAME_MAX = 31  # PSHMNAMLEN on macOS, the leading slash included


class SharedMemoryError(OSError):
    """An OS call on a shared-memory object failed; carries errno, its text and the name."""

    def __init__(self, err: int, action: str, name: str) -> None:
        super().__init__(err, f"{action} '{name}': {os.strerror(err)}", name)
        self.action = action
        self.name = name


class RegionTooSmall(ValueError):
    """The object exists but is smaller than the caller needs (nothing was mapped)."""

    def __init__(self, name: str, size: int, needed: int) -> None:
        super().__init__(
            f"shared memory object '{name}' has {size} bytes, {needed} needed"
        )
        self.name = name
        self.size = size
        self.needed = needed


# Identities of the live segments this process created (see the module docstring).
_SERVER_SEGMENTS: dict[tuple[object, ...], int] = {}
_SERVER_LOCK = threading.Lock()


def _identity(fd: int, name: str) -> tuple[object, ...]:
    st = os.fstat(fd)
    if st.st_ino:
        return ("ino", st.st_dev, st.st_ino)
    return ("name", name)  # macOS reports no inode for shm objects; its names are not listable


def _record_server_segment(ident: tuple[object, ...]) -> None:
    with _SERVER_LOCK:
        _SERVER_SEGMENTS[ident] = _SERVER_SEGMENTS.get(ident, 0) + 1


def _forget_server_segment(ident: tuple[object, ...]) -> None:
    with _SERVER_LOCK:
        n = _SERVER_SEGMENTS.get(ident, 0) - 1
        if n > 0:
            _SERVER_SEGMENTS[ident] = n
        else:
            _SERVER_SEGMENTS.pop(ident, None)


def is_server_segment(region: SharedMemoryRegion) -> bool:
    """Whether ``region`` maps an object this process created and still maps (its own segment)."""
    ident = region.identity
    if ident is None:
        return False
    with _SERVER_LOCK:
        return ident in _SERVER_SEGMENTS


def server_segment_count() -> int:
    """How many of the server's own segments are live (tests, diagnostics)."""
    with _SERVER_LOCK:
        return len(_SERVER_SEGMENTS)


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


# pread/pwrite work on Linux shm objects (tmpfs files); macOS's shm_open objects refuse them.
_PREAD_WORKS = hasattr(os, "preadv") and sys.platform.startswith("linux")
_NO_PREAD = {_errno.EINVAL, _errno.ENXIO, _errno.ENODEV, _errno.ESPIPE, _errno.EOPNOTSUPP}


class RegionTruncated(TritonError):
    """The client shrank its object after registering it: the bytes asked for are gone."""

    def __init__(self, name: str, offset: int, size: int, now: int) -> None:
        super().__init__(ErrorCode.INVALID_ARG,
                         f"shared memory object '{name}' no longer holds bytes "
                         f"[{offset}, {offset + size}): it was truncated to {now} bytes after "
                         "registration")


def _raise_errno(action: str, name: str) -> None:
    err = _native.ffi.errno or _errno.EIO
    raise SharedMemoryError(err, action, name)


class SharedMemoryRegion:
    """One mapped POSIX shared-memory object (the whole object, mapped at offset 0)."""

    def __init__(
        self,
        name: str,
        size: int,
        ptr: Any,
        writable: bool,
        *,
        fd: int = -1,
        identity: tuple[object, ...] | None = None,
        server_owned: bool = False,
    ) -> None:
        # Use create() / open(); this takes ownership of a mapping made by them.
        self.name = name  # the OS name
        self._size = size
        self._ptr = ptr  # cffi gc pointer: munmap when the last reference goes
        self.writable = writable
        self._view: memoryview | None = None  # the whole mapping; slices are handed out
        self._closed = False
        self._fd = fd  # kept open (client regions) to fstat the current size
        self.identity = identity
        self._server_owned = server_owned
        if server_owned and identity is not None:
            _record_server_segment(identity)

    # -- construction -------------------------------------------------------

    @classmethod
    def create(
        cls, key: str, size: int, *, exclusive: bool = True, own: bool = True
    ) -> SharedMemoryRegion:
        """Create (or with exclusive=False, open or create) and map an object of ``size`` bytes.

        The object is sized with one ftruncate (macOS allows only one); an
        existing object smaller than ``size`` cannot grow on macOS. It counts
        as one of the server's own segments while mapped (``own=False``: a
        region made on a client's behalf, as tests do).
        """
        if size <= 0:
            raise ValueError(f"shared memory size must be positive, got {size}")
        flags = _lib().TC_SHM_CREATE | (_lib().TC_SHM_EXCL if exclusive else 0)
        return cls._open_map(os_name(key), flags, size, True, server_owned=own)

    @classmethod
    def open(cls, key: str, *, writable: bool = True) -> SharedMemoryRegion:
        """Map an existing object by our own name rule (no client-key fallback)."""
        flags = 0 if writable else _lib().TC_SHM_READONLY
        return cls._open_map(os_name(key), flags, 0, writable)

    @classmethod
    def attach_client(cls, key: str, *, min_size: int = 0) -> SharedMemoryRegion:
        """Map a region a client created, trying each of client_key_candidates(key).

        The object's real size is checked against ``min_size`` before anything
        is mapped (RegionTooSmall). The fd stays open for ``current_size()``
        until unmap().
        """
        last: SharedMemoryError | None = None
        for name in client_key_candidates(key):
            try:
                return cls._open_map(name, 0, 0, True, min_size=min_size, keep_fd=True)
            except SharedMemoryError as exc:
                if exc.errno != _errno.ENOENT:
                    raise
                last = exc
        assert last is not None
        raise last

    @classmethod
    def _open_map(
        cls,
        name: str,
        flags: int,
        size: int,
        writable: bool,
        *,
        min_size: int = 0,
        keep_fd: bool = False,
        server_owned: bool = False,
    ) -> SharedMemoryRegion:
        ffi, lib = _native.ffi, _lib()
        raw = name.encode("utf-8")
        size_out = ffi.new("uint64_t *")
        fd = lib.tc_shm_open(raw, flags, size, size_out)
        if fd < 0:
            _raise_errno("shm_open", name)
        keep = False
        try:
            ident = _identity(fd, name)
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
            region = cls(name, real, ptr, writable, fd=fd if keep_fd else -1,
                         identity=ident, server_owned=server_owned)
            keep = keep_fd
        finally:
            if not keep:
                lib.tc_close(fd)  # the mapping keeps the object alive
        return region

    # -- use ----------------------------------------------------------------

    @property
    def size(self) -> int:
        """The object's size as the OS reports it (macOS may round it to a page)."""
        return self._size

    def current_size(self) -> int:
        """The object's size now (fstat on the kept fd); the mapped size when no fd is kept.

        A client may shrink its object after registering it; touching mapped
        pages past the new end raises SIGBUS, so callers check this first.
        """
        if self._fd < 0:
            return self._size
        try:
            return os.fstat(self._fd).st_size
        except OSError:
            return 0

    def read(self, offset: int, size: int) -> memoryview:
        """A private copy of bytes [offset, offset + size), read with pread on the kept fd.

        A view would let a model read the client's pages while it runs, and a client that
        truncates its object meanwhile would kill the server (SIGBUS); pread past the new end
        just comes up short, which fails this request instead. Where the fd cannot be read
        (macOS shm objects refuse read(); they also cannot shrink once sized) or no fd is
        kept (the server's own segments), the checked view is returned.
        """
        if self._fd >= 0 and _PREAD_WORKS:
            buf = np.empty(size, np.uint8)
            mv = memoryview(buf)
            done = 0
            try:
                while done < size:
                    n = os.preadv(self._fd, [mv[done:]], offset + done)
                    if n <= 0:
                        break
                    done += n
            except OSError as e:
                if e.errno not in _NO_PREAD:
                    raise SharedMemoryError(e.errno or _errno.EIO, "pread", self.name) from None
            else:
                if done < size:
                    raise RegionTruncated(self.name, offset, size, self.current_size())
                return mv
        if not self.covers(offset, size):
            raise RegionTruncated(self.name, offset, size, self.current_size())
        return self.buffer(offset, size)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset``: pwrite on the kept fd (no SIGBUS whatever the client
        did to its object), else through the mapping after a size check."""
        size = len(data) if isinstance(data, bytes) else data.nbytes
        if not self.covers(offset, size):
            raise RegionTruncated(self.name, offset, size, self.current_size())
        if self._fd >= 0 and _PREAD_WORKS:
            mv = memoryview(data).cast("B")
            done = 0
            try:
                while done < size:
                    done += os.pwritev(self._fd, [mv[done:]], offset + done)
                return
            except OSError as e:
                if e.errno not in _NO_PREAD or done:
                    raise SharedMemoryError(e.errno or _errno.EIO, "pwrite", self.name) from None
        self.buffer(offset, size)[:] = data

    def covers(self, offset: int, size: int) -> bool:
        """Whether bytes [offset, offset + size) lie inside the object as it is now."""
        return offset + size <= min(self._size, self.current_size())

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
        if self._fd >= 0:
            _native.lib.tc_close(self._fd)
            self._fd = -1
        if self._server_owned and not self._closed and self.identity is not None:
            _forget_server_segment(self.identity)
        self._closed = True

    close = unmap

    def __del__(self) -> None:
        # A region dropped without unmap() must not keep its fd or its server-segment record.
        if not self._closed:
            try:
                self.unmap()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

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
