"""The shared-memory arena: segments, a first-fit allocator, release flags.

Each side owns one arena it writes into (the server: request inputs and BLS
responses; the worker: response outputs and BLS inputs). Only the owner
allocates. A block starts with a 64-byte header whose first byte is its state;
the reader sets RELEASED when done with the data, and the owner reclaims
released blocks lazily, so freeing costs no message. Segments are added when
a block does not fit (the arena grows); segment 0 is created with the worker.

Standard library and numpy only (runs in worker processes).
"""

from __future__ import annotations

import bisect
import mmap
import os
import threading
from collections.abc import Callable

HEADER = 64
ALIGN = 64
INUSE = 1
RELEASED = 2
# Second header byte of an EXEC input block: 0 when sent, set to 1 by the worker when it
# reads the EXEC frame, so a worker found dead with it still 0 never started the batch.
ACCEPTED_AT = HEADER - 1


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def map_segment(name: str) -> memoryview:
    """Map an existing POSIX shared-memory object read-write (no cffi, no resource tracker)."""
    try:
        import _posixshmem  # CPython's own binding, present on Linux and macOS
    except ImportError:  # pragma: no cover - CPython always has it on POSIX
        fd = os.open("/dev/shm/" + name.lstrip("/"), os.O_RDWR)
    else:
        fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    return memoryview(mm)


def release(seg: memoryview, data_offset: int) -> None:
    """Reader side: the data at ``data_offset`` is no longer needed."""
    seg[data_offset - HEADER] = RELEASED


class Arena:
    """The owner's view: allocate blocks, reclaim those the reader released."""

    def __init__(self, new_segment: Callable[[int, int], memoryview], initial: int,
                 growth: int) -> None:
        self._new_segment = new_segment  # (seg_id, min_size) -> mapped segment
        self.growth = max(growth, 4096)
        self.segs: list[memoryview] = []
        self._starts: list[list[int]] = []  # per segment: sorted free block starts
        self._sizes: list[dict[int, int]] = []  # per segment: free start -> size
        self._live: dict[tuple[int, int], int] = {}  # (seg, start) -> size
        self._reclaim_at = 16
        self.lock = threading.Lock()
        self._add(initial)

    def _add(self, min_size: int) -> None:
        seg_id = len(self.segs)
        mv = self._new_segment(seg_id, min_size)
        self.segs.append(mv)
        self._starts.append([0])
        self._sizes.append({0: len(mv)})

    @property
    def total_size(self) -> int:
        return sum(len(s) for s in self.segs)

    def alloc(self, nbytes: int) -> tuple[int, int]:
        """A block of ``nbytes``: (segment id, data offset). Grows the arena when needed."""
        need = HEADER + _align(max(nbytes, 1))
        with self.lock:
            if len(self._live) >= self._reclaim_at:
                self._reclaim()
            for attempt in range(3):
                for seg_id in range(len(self.segs) - 1, -1, -1):
                    starts = self._starts[seg_id]
                    sizes = self._sizes[seg_id]
                    for start in starts:
                        size = sizes[start]
                        if size >= need:
                            starts.remove(start)
                            del sizes[start]
                            if size > need:
                                rest = start + need
                                bisect.insort(starts, rest)
                                sizes[rest] = size - need
                            self.segs[seg_id][start] = INUSE
                            self._live[(seg_id, start)] = need
                            return seg_id, start + HEADER
                if attempt == 0:
                    self._reclaim()
                elif attempt == 1:
                    self._add(max(self.growth, need))
        raise MemoryError(f"shared-memory arena cannot hold a block of {nbytes} bytes")

    def free(self, seg_id: int, data_offset: int) -> None:
        """Owner side: give the block back now."""
        with self.lock:
            start = data_offset - HEADER
            size = self._live.pop((seg_id, start), None)
            if size is not None:
                self._put(seg_id, start, size)

    def _reclaim(self) -> None:
        done = [k for k in self._live if self.segs[k[0]][k[1]] == RELEASED]
        for key in done:
            self._put(key[0], key[1], self._live.pop(key))
        self._reclaim_at = max(16, 2 * len(self._live))

    def _put(self, seg_id: int, start: int, size: int) -> None:
        self.segs[seg_id][start] = 0
        starts = self._starts[seg_id]
        sizes = self._sizes[seg_id]
        i = bisect.bisect_left(starts, start)
        if i < len(starts) and starts[i] == start + size:  # merge with the next free block
            size += sizes.pop(starts.pop(i))
        if i > 0 and starts[i - 1] + sizes[starts[i - 1]] == start:  # and the previous one
            sizes[starts[i - 1]] += size
            return
        starts.insert(i, start)
        sizes[start] = size

    def live_blocks(self) -> int:
        with self.lock:
            return len(self._live)
