"""Triton's system shared-memory extension: the registry the HTTP and gRPC front ends call.

A client creates a POSIX region and registers it (name, key, offset,
byte_size); requests then name the region for inputs and outputs. Errors are
TritonErrors with Triton's codes and messages. Each region is mapped once, whole
(mmap offsets must be page-aligned; the registered offset need not be), and the
requested window is sliced from it.

In-flight use: ``acquire(name)`` (or the ``lease(name)`` block) pins a region;
an unregister while leased removes the name at once (new requests get
NOT_FOUND, the name can be reused) but the munmap waits for the last lease.
A request resolves its output regions when it is accepted and writes through
those leases, so a region unregistered and re-registered (maybe by another
client) under the same name mid-request never receives its output. Views
handed out also keep their pages mapped on their own (see shm.py), so a stray
view never dangles.

Safety against the client: the server's own segments are refused by identity
(shm.is_server_segment), whatever their key; each use re-checks the object's
current size, since a client that truncates its object after registering
would make the next access SIGBUS; and the number of regions is capped
(``max_regions``, --shm-max-regions: each costs a memory map and an fd, and a
process has ~65k maps). Triton has no such cap.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import ErrorCode, TritonError
from .shm import (
    RegionTooSmall,
    RegionTruncated,
    SharedMemoryError,
    SharedMemoryRegion,
    is_server_segment,
)

# Keys of regions the server's own processes use: a client must not register
# (and so read or scribble on) them. Triton refuses the python backend's prefix;
# "tritoncore_" is the prefix of this project's own arenas.
PYTHON_BACKEND_PREFIX = "triton_python_backend_shm_region_"  # Triton's, underscore included
TRITONCORE_PREFIX = "tritoncore_"
RESERVED_KEY_PREFIXES: tuple[str, ...] = (PYTHON_BACKEND_PREFIX, TRITONCORE_PREFIX)
DEFAULT_MAX_REGIONS = 1024
SIZE_MAX = 2**64 - 1  # Triton checks offset + byte_size against its size_t


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(eq=False)
class _Region:
    name: str
    key: str
    offset: int
    byte_size: int
    shm: SharedMemoryRegion
    leases: int = 0
    retired: bool = False  # unregistered; unmap when the last lease ends
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }

    def check(self, offset: int, byte_size: int) -> None:
        """INVALID_ARG unless [offset, offset + byte_size) lies in the registered window."""
        # Triton's checks, order and words (SharedMemoryManager::GetMemoryInfo); an empty
        # access at the window's end is harmless and allowed (Triton refuses it)
        if not _is_count(offset) or offset > self.byte_size or (
                offset == self.byte_size and byte_size != 0):
            raise TritonError.invalid_arg(
                f"Invalid offset for shared memory region: '{self.name}'"
            )
        if _is_count(byte_size) and byte_size > SIZE_MAX - offset:
            raise TritonError.invalid_arg(
                f"Integer overflow detected: byte_size ({byte_size}) + offset ({offset}) "
                f"exceeds maximum value ({SIZE_MAX}) for region '{self.name}'"
            )
        if not _is_count(byte_size) or byte_size > self.byte_size - offset:
            raise TritonError.invalid_arg(
                f"Invalid offset + byte size for shared memory region: '{self.name}'"
            )

    def view(self, offset: int, byte_size: int) -> memoryview:
        """Bytes [offset, offset + byte_size) of the registered window, checked."""
        self.check(offset, byte_size)
        start = self.offset + offset
        if not self.shm.covers(start, byte_size):
            # Touching the pages past the object's end now would kill the server (SIGBUS).
            raise TritonError.invalid_arg(
                f"shared memory region '{self.name}' (key '{self.key}') no longer holds bytes "
                f"[{start}, {start + byte_size}): its object was truncated to "
                f"{self.shm.current_size()} bytes after registration"
            )
        return self.shm.buffer(start, byte_size)

    def read(self, offset: int, byte_size: int) -> memoryview:
        """A private copy of bytes [offset, offset + byte_size) of the window (see
        SharedMemoryRegion.read: a client's later truncation fails this read, not the server)."""
        self.check(offset, byte_size)
        try:
            return self.shm.read(self.offset + offset, byte_size)
        except RegionTruncated as e:
            raise TritonError.invalid_arg(
                f"shared memory region '{self.name}' (key '{self.key}'): {e.message}") from None

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` of the window, checked (never through a stale view)."""
        size = len(data) if isinstance(data, bytes) else data.nbytes
        self.check(offset, size)
        try:
            self.shm.write(self.offset + offset, data)
        except RegionTruncated as e:
            raise TritonError.invalid_arg(
                f"shared memory region '{self.name}' (key '{self.key}'): {e.message}") from None

    def pin(self) -> None:
        with self.lock:
            self.leases += 1

    def unpin(self) -> None:
        with self.lock:
            self.leases -= 1
            unmap = self.retired and self.leases == 0
        if unmap:
            self.shm.unmap()


class RegionLease:
    """A registered region pinned for one request (what ``acquire()`` returns).

    ``release()`` unpins it (idempotent); a lease dropped unreleased -- a request
    that ends on any path -- releases itself when collected.
    """

    def __init__(self, region: _Region) -> None:
        self._region = region
        region.pin()
        self._finalizer = weakref.finalize(self, region.unpin)

    def release(self) -> None:
        self._finalizer()

    @property
    def name(self) -> str:
        return self._region.name

    @property
    def byte_size(self) -> int:
        return self._region.byte_size

    def check(self, offset: int, byte_size: int) -> None:
        self._region.check(offset, byte_size)

    def view(self, offset: int, byte_size: int) -> memoryview:
        return self._region.view(offset, byte_size)

    def read(self, offset: int, byte_size: int) -> memoryview:
        return self._region.read(offset, byte_size)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._region.write(offset, data)


class SystemSharedMemoryRegistry:
    """Registered system shared-memory regions, by name. Thread-safe."""

    def __init__(
        self,
        reserved_prefixes: tuple[str, ...] = RESERVED_KEY_PREFIXES,
        max_regions: int = DEFAULT_MAX_REGIONS,
    ) -> None:
        self._reserved = reserved_prefixes
        self.max_regions = max_regions
        self._lock = threading.Lock()
        self._regions: dict[str, _Region] = {}
        # --frontend-processes N > 1 (frontend_processes.py): make a registration or an
        # unregistration in the other processes too; on_register raises to undo one here
        self.on_register: Callable[[str, str, int, int], None] | None = None
        self.on_unregister: Callable[[str | None], None] | None = None

    # -- the extension's three calls ------------------------------------------

    def register(self, name: str, key: str, offset: int, byte_size: int, *,
                 everywhere: bool = True) -> None:
        self._register(name, key, offset, byte_size)
        if everywhere and self.on_register is not None:
            try:
                self.on_register(name, key, offset, byte_size)
            except BaseException:
                self.unregister(name, everywhere=False)
                raise

    def _register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        invalid = TritonError.invalid_arg(
            f"failed to register shared memory region '{name}': invalid args"
        )
        if not _is_count(offset) or not _is_count(byte_size):
            raise invalid
        bare = key.lstrip("/")
        if not bare:  # Triton's check and words (ValidateSharedMemoryKey)
            raise TritonError.invalid_arg(
                f"cannot register shared memory region '{name}' - invalid shm key '{key}'")
        for prefix in self._reserved:
            if bare.startswith(prefix):
                raise TritonError.invalid_arg(
                    f"cannot register shared memory region '{name}' with key '{key}' "
                    f"as the key contains the reserved prefix '{prefix}'"
                )
        with self._lock:
            if name in self._regions:
                raise TritonError(
                    ErrorCode.ALREADY_EXISTS,
                    f"shared memory region '{name}' already in manager",
                )
            if len(self._regions) >= self.max_regions:
                raise TritonError.unavailable(
                    f"failed to register shared memory region '{name}': the server already "
                    f"holds the maximum of {self.max_regions} registered regions "
                    "(--shm-max-regions); unregister some first"
                )
            try:
                # The real size is checked before mapping (RegionTooSmall).
                shm = SharedMemoryRegion.attach_client(key, min_size=offset + byte_size)
            except RegionTooSmall:
                raise invalid from None
            except SharedMemoryError as exc:
                if exc.action == "shm_open":
                    raise TritonError.internal(
                        f"Unable to open shared memory region: '{key}': {exc.strerror}"
                    ) from None
                raise TritonError.invalid_arg(
                    f"failed to register shared memory region '{name}': {exc.strerror}"
                ) from None
            except ValueError:  # an empty key or one with a NUL byte
                raise TritonError.internal(
                    f"Unable to open shared memory region: '{key}'"
                ) from None
            if is_server_segment(shm):
                # Checked by identity, not name: the server's arenas are named at random.
                shm.unmap()
                raise TritonError.invalid_arg(
                    f"cannot register shared memory region '{name}' with key '{key}' as the "
                    "key names one of the server's own shared memory segments"
                )
            self._regions[name] = _Region(name, key, offset, byte_size, shm)

    def unregister(self, name: str, *, everywhere: bool = True) -> None:
        """Forget ``name`` (no error when unknown, as Triton); unmap once no request uses it."""
        with self._lock:
            region = self._regions.pop(name, None)
        if region is not None:
            self._retire(region)
        if everywhere and self.on_unregister is not None:
            self.on_unregister(name)

    def unregister_all(self, *, everywhere: bool = True) -> None:
        with self._lock:
            regions = list(self._regions.values())
            self._regions.clear()
        for region in regions:
            self._retire(region)
        if everywhere and self.on_unregister is not None:
            self.on_unregister(None)

    def status(self, name: str | None = None) -> list[dict[str, object]]:
        """[{name, key, offset, byte_size}] for ``name``, or for every region when None/empty."""
        with self._lock:
            if not name:
                return [r.status() for r in self._regions.values()]
            region = self._regions.get(name)
        if region is None:
            raise TritonError.not_found(
                f"Unable to find system shared memory region: '{name}'"
            )
        return [region.status()]

    # -- data access for inputs and outputs -----------------------------------

    def view(self, name: str, offset: int, byte_size: int) -> memoryview:
        """A writable view of ``byte_size`` bytes at ``offset`` in region ``name`` (no copy).

        Checked against the registered window. The view keeps its pages mapped
        by itself; use ``lease()`` to also keep an unregister from unmapping the
        region while a request runs.
        """
        return self._get(name).view(offset, byte_size)

    def read(self, name: str, offset: int, byte_size: int) -> memoryview:
        """A private copy of ``byte_size`` bytes at ``offset`` in region ``name``, checked."""
        return self._get(name).read(offset, byte_size)

    def write(self, name: str, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` in region ``name``, checked."""
        self._get(name).write(offset, data)

    def acquire(self, name: str) -> RegionLease:
        """Pin region ``name`` for one request (NOT_FOUND if unknown); release() or drop it."""
        with self._lock:
            return RegionLease(self._get(name))

    @contextmanager
    def lease(self, name: str) -> Iterator[RegionLease]:
        """Pin region ``name`` for the duration of the block (one request's use of it)."""
        held = self.acquire(name)
        try:
            yield held
        finally:
            held.release()

    # -- helpers ---------------------------------------------------------------

    def _get(self, name: str) -> _Region:
        region = self._regions.get(name)
        if region is None:
            raise TritonError.not_found(
                f"Unable to find shared memory region: '{name}'"
            )
        return region

    @staticmethod
    def _retire(region: _Region) -> None:
        with region.lock:
            region.retired = True
            unmap = region.leases == 0
        if unmap:
            region.shm.unmap()

    def __len__(self) -> int:
        return len(self._regions)

    def __contains__(self, name: object) -> bool:
        return name in self._regions

    def close(self) -> None:
        """Unregister everything (server shutdown)."""
        self.unregister_all()


__all__ = [
    "DEFAULT_MAX_REGIONS",
    "PYTHON_BACKEND_PREFIX",
    "RESERVED_KEY_PREFIXES",
    "TRITONCORE_PREFIX",
    "RegionLease",
    "SystemSharedMemoryRegistry",
]
