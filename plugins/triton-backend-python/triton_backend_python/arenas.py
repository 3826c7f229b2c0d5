"""The two shared-memory arenas a worker shares with the server, and the tensors in them.

- The server's arena (``s`` segments, an _arena.Arena the server allocates in) holds
  request inputs and BLS responses.
- The worker's arena (``w`` segments, allocated by the worker; the server creates a new
  segment when the worker asks with GROW) holds response outputs and BLS inputs.

Frames only name (segment, offset, size). A segment is unlinked as soon as both
processes mapped it (MAPPED), so nothing is left in /dev/shm.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError
from triton_core.memory.shm import SharedMemoryError, SharedMemoryRegion
from triton_core.request import InferenceResponse
from triton_core.tensor import Tensor
from triton_python_backend_utils import _arena

from .codes import CODES, from_wire

_ZERO_COPY = 1 << 16  # outputs at least this large are served from the arena without a copy
_WIRE = {dt.value: (dt, np.dtype(dt.numpy) if dt is not DataType.BYTES else np.dtype(object))
         for dt in DataType}  # wire name -> (DataType, numpy dtype)
_new_tensor = object.__new__


def nbytes(raw: Any) -> int:
    return raw.nbytes if isinstance(raw, memoryview) else len(raw)


def _shm_free() -> str:
    try:
        st = os.statvfs("/dev/shm")
        return f"; /dev/shm has {st.f_bavail * st.f_frsize} bytes free"
    except OSError:
        return ""


class ArenaPair:
    """One worker's two arenas; ``describe`` names the worker in errors."""

    def __init__(self, default_size: int, growth: int, describe: Callable[[], str]) -> None:
        self.default_size = default_size
        self.growth = growth
        self._describe = describe
        # Unguessable (64 random bits), and short enough for macOS (31 bytes with "s<seg>").
        # A guess would not help anyway: the client shared-memory API refuses the server's
        # own segments by identity (triton_core.memory.shm.is_server_segment), and each is
        # unlinked as soon as both processes mapped it.
        self.prefix = f"/tpb{os.getpid() % 0xFFFFF:x}{secrets.token_hex(8)}"
        self.regions: dict[str, SharedMemoryRegion] = {}
        self.w_segs: list[memoryview] = []
        self.s_arena: _arena.Arena | None = None

    # create / unlink ------------------------------------------------------------
    def create_first(self) -> None:
        """Segment 0 of each arena, before the worker starts."""
        self.s_arena = _arena.Arena(self._new_s_segment, self.default_size, self.growth)
        self.w_segs.append(self._create(f"{self.prefix}w0", self.default_size))

    def _create(self, name: str, size: int) -> memoryview:
        try:
            region = SharedMemoryRegion.create(name, size)
        except (SharedMemoryError, OSError) as e:
            raise TritonError.unavailable(
                f"python backend: cannot create the shared-memory region '{name}' of {size} bytes "
                f"for {self._describe()}: {e.strerror or e}{_shm_free()}") from None
        self.regions[region.name] = region
        if sys.platform.startswith("linux"):
            # Reserve the pages now: without this a full /dev/shm shows up later as SIGBUS.
            try:
                fd = os.open("/dev/shm/" + region.name.lstrip("/"), os.O_RDWR)
                try:
                    os.posix_fallocate(fd, 0, size)
                finally:
                    os.close(fd)
            except OSError as e:
                self.unlink(region.name)
                raise TritonError.unavailable(
                    f"python backend: the OS refused {size} bytes of shared memory for region "
                    f"'{name}' of {self._describe()}: {e.strerror}{_shm_free()} (enlarge /dev/shm, "
                    "e.g. docker --shm-size, or lower shm-default-byte-size)") from None
        return region.buffer()

    def _new_s_segment(self, seg_id: int, min_size: int) -> memoryview:
        size = max(min_size, self.default_size if seg_id == 0 else self.growth)
        return self._create(f"{self.prefix}s{seg_id}", size)

    def grow_worker(self, seg_id: int, min_size: int) -> str:
        """A new worker-arena segment (GROW); its name (raises TritonError)."""
        name = f"{self.prefix}w{seg_id}"
        self.w_segs.append(self._create(name, max(self.growth, int(min_size))))
        return name

    def mapped(self, arena: str, seg_id: int) -> None:
        """The worker mapped segment ``seg_id`` of arena ``arena`` (s / w): unlink it."""
        self.unlink(f"{self.prefix}{arena}{seg_id}")

    def unlink(self, name: str) -> None:
        region = self.regions.get(name)
        if region is not None and not getattr(region, "_unlinked", False):
            try:
                region.unlink()
            except OSError:
                pass
            region._unlinked = True  # type: ignore[attr-defined]

    def unlink_all(self) -> None:
        for name in list(self.regions):
            self.unlink(name)

    # tensors ----------------------------------------------------------------------
    def accepted(self, seg: int, base: int) -> bool:
        """Whether the worker read the EXEC frame whose input block is at (seg, base)."""
        arena = self.s_arena
        return arena is None or arena.segs[seg][base - _arena.ACCEPTED_AT] != 0

    def output_tensor(self, meta: tuple) -> Tensor:
        name, wire, shape, seg, off, size = meta
        mv = self.w_segs[seg]
        dt, npdt = _WIRE[wire]
        if size >= _ZERO_COPY and dt is not DataType.BYTES:
            arr = np.frombuffer(mv, dtype=npdt, count=size // npdt.itemsize,
                                offset=off).reshape(shape)
            weakref.finalize(arr, _arena.release, mv, off)
            return Tensor(name, dt, shape, array=arr, raw=memoryview(arr).cast("B"))
        raw = mv[off:off + size].tobytes()
        mv[off - _arena.HEADER] = _arena.RELEASED
        # Small outputs: the copied wire bytes only; the array is made if someone asks.
        # (Tensor.__init__ would re-check the shape marshal already gave as a tuple of ints.)
        t = _new_tensor(Tensor)
        t.name, t.datatype, t.shape, t._array, t._raw, t.parameters = name, dt, shape, None, raw, {}
        t._device = None
        return t

    def to_response(self, meta: tuple) -> InferenceResponse:
        """A worker's response (outputs in the worker arena) as a core response."""
        outs, params, err = meta
        ot = self.output_tensor
        resp = InferenceResponse(outputs=[ot(m) for m in outs])
        if params:
            resp.parameters = json.loads(params)
        if err is not None:
            resp.error = from_wire(err[0], err[1])
        return resp

    def write_response(self, resp: InferenceResponse | None) -> tuple | None:
        """A core response into the server arena (BLS responses)."""
        if resp is None:
            return None
        params = json.dumps(resp.parameters) if resp.parameters else ""
        if resp.error is not None:
            return ((), params, (CODES[resp.error.code.value], resp.error.message))
        arena = self.s_arena
        assert arena is not None
        metas = []
        for t in resp.outputs:
            raw = t.to_bytes()
            n = nbytes(raw)
            seg, off = arena.alloc(n)
            if n:
                arena.segs[seg][off:off + n] = raw if not isinstance(raw, memoryview) else raw.cast("B")
            metas.append((t.name, t.datatype.value, tuple(t.shape), seg, off, n))
        return (tuple(metas), params, None)

    def read_inputs(self, inputs: tuple, blocks: list) -> dict[str, Tensor]:
        """A BLS request's inputs (in the worker arena), read in place; each block read is
        appended to ``blocks`` for release() once the request is done."""
        tensors = {}
        for name, wire, shape, seg, off, size in inputs:
            mv = self.w_segs[seg]
            blocks.append((mv, off))
            dt = DataType.from_wire(wire)
            tensors[name] = Tensor.from_raw(name, dt, shape, mv[off:off + size])
        return tensors

    @staticmethod
    def release(blocks: list) -> None:
        for mv, off in blocks:
            _arena.release(mv, off)
