"""The response cache (Triton's ``local`` cache: ``--cache-config local,size=N``).

Entries are keyed by model name, version, every input (name, datatype, shape,
bytes), the requested outputs with their parameters, and the request
parameters that can change a result (all but the scheduling ones). A hit
answers without queueing or executing. Least recently used entries are evicted
to keep the total size (output bytes plus a small overhead per entry) within
``size``. A model opts in with ``response_cache { enable: true }``; decoupled
and sequence models never use it. An ensemble that opts in caches its own final
responses (cache_use.py); composing models cache on their own settings.

The cache counts what Triton's local cache reports as its own metrics: lookups,
hits, misses, evictions, entries, utilization (bytes used / size) and the total
time spent in lookups and insertions.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time

from ..dtypes import DataType
from ..errors import TritonError
from ..request import InferenceRequest, InferenceResponse
from ..tensor import Tensor

# Request parameters that only steer scheduling or the wire format.
_IGNORED_PARAMETERS = frozenset({
    "priority", "timeout", "sequence_id", "sequence_start", "sequence_end",
    "binary_data_output", "headers",
})
ENTRY_OVERHEAD = 64


class _Entry:
    __slots__ = ("outputs", "parameters", "size")

    def __init__(self, outputs: list[tuple[str, DataType, tuple[int, ...], bytes]],
                 parameters: dict, size: int) -> None:
        self.outputs = outputs
        self.parameters = parameters
        self.size = size


def parse_cache_config(items: dict[str, dict[str, str]]) -> int | None:
    """The local cache's size in bytes from ``{"local": {"size": "N"}}``; None when absent."""
    if not items:
        return None
    for name in items:
        if name != "local":
            raise TritonError.invalid_arg(
                f"cache '{name}' is not supported: only the 'local' cache is available")
    local = items["local"]
    for key in local:
        if key != "size":
            raise TritonError.invalid_arg(f"unknown local cache setting '{key}' (known: size)")
    try:
        size = int(local.get("size", "0"))
    except ValueError:
        raise TritonError.invalid_arg(
            f"local cache size must be an integer number of bytes, got '{local.get('size')}'") from None
    if size < 0:
        raise TritonError.invalid_arg("local cache size must not be negative")
    return size


class ResponseCache:
    """A thread-safe LRU of complete responses, bounded by total bytes."""

    def __init__(self, size: int) -> None:
        self.capacity = size
        self.used = 0
        self._entries: collections.OrderedDict[bytes, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.lookups = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.lookup_ns = 0  # total time in lookup(), hits and misses
        self.insert_ns = 0  # total time in insert()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(model: str, version: int, req: InferenceRequest, tag: str = "") -> bytes:
        """``tag``: which load of the model (CachedVersion.cache_tag)."""
        h = hashlib.blake2b(digest_size=32)
        h.update(f"{model}\0{version}\0{tag}\0".encode())
        for name in sorted(req.inputs):
            t = req.inputs[name]
            h.update(f"{name}\0{t.datatype.value}\0{list(t.shape)}\0".encode())
            h.update(t.to_bytes())
        if req.outputs is not None:
            outs = sorted((o.name, sorted(o.parameters.items())) for o in req.outputs)
            h.update(repr(outs).encode())
        params = sorted((k, repr(v)) for k, v in req.parameters.items()
                        if k not in _IGNORED_PARAMETERS)
        h.update(repr(params).encode())
        return h.digest()

    def utilization(self) -> float:
        """The share of ``size`` in use, 0.0 - 1.0."""
        return self.used / self.capacity if self.capacity else 0.0

    def counters(self) -> dict[str, int | float]:
        """One consistent reading of the counters (for the metrics)."""
        with self._lock:
            return {"entries": len(self._entries), "utilization": self.utilization(),
                    "lookups": self.lookups, "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions, "lookup_ns": self.lookup_ns,
                    "insert_ns": self.insert_ns}

    def lookup(self, key: bytes, req: InferenceRequest | None = None) -> InferenceResponse | None:
        t0 = time.monotonic_ns()
        with self._lock:
            self.lookups += 1
            e = self._entries.get(key)
            if e is None:
                self.misses += 1
                self.lookup_ns += time.monotonic_ns() - t0
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        outs = [Tensor.from_raw(n, dt, shape, raw) for n, dt, shape, raw in e.outputs]
        resp = InferenceResponse(outputs=outs, parameters=dict(e.parameters))
        with self._lock:
            self.lookup_ns += time.monotonic_ns() - t0
        return resp

    def insert(self, key: bytes, resp: InferenceResponse) -> None:
        t0 = time.monotonic_ns()
        try:
            self._insert(key, resp)
        finally:
            took = time.monotonic_ns() - t0
            with self._lock:
                self.insert_ns += took

    def _insert(self, key: bytes, resp: InferenceResponse) -> None:
        outputs = [(t.name, t.datatype, t.shape, bytes(t.to_bytes())) for t in resp.outputs]
        size = ENTRY_OVERHEAD + sum(len(o[3]) + len(o[0]) for o in outputs)
        if size > self.capacity:
            return  # never fits
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.used -= old.size
            while self._entries and self.used + size > self.capacity:
                _, ev = self._entries.popitem(last=False)
                self.used -= ev.size
                self.evictions += 1
            self._entries[key] = _Entry(outputs, dict(resp.parameters), size)
            self.used += size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0
