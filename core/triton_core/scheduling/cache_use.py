"""How a model version uses the response cache: one path for models and ensembles.

A version with ``cache`` set (the manager sets it when the model's config has
``response_cache { enable: true }``, the server has a cache and the model can be
cached) looks each request up before it runs it. A hit answers at once and counts
as a success and a cache hit; nothing is queued or executed (for an ensemble: no
composing model sees the request). A miss runs the request as usual; its FINAL
response is stored unless it is an error, and the lookup plus the insertion count
as the miss's duration.

Entries are keyed by the load as well as the name and version: a model reloaded under
the same version (new files, new weights) never answers with the old load's results,
and an ensemble's entries follow the loads of its composing models.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

from ..request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .stats import ModelStats

_LOADS = itertools.count(1)


def next_load_id() -> int:
    """A number no other load of any model in this process has."""
    return next(_LOADS)


class CachedVersion:
    """Mixin for a version that answers from the response cache when it can."""

    name: str
    version: int
    stats: ModelStats
    cache: ResponseCache | None = None
    load_id: int = 0  # next_load_id(), set by each version's constructor

    def cache_tag(self) -> str:
        """What, besides name and version, identifies this load's results."""
        return str(self.load_id)

    def _cache_lookup(self, cache: ResponseCache, req: InferenceRequest) -> bool:
        """True when the cache answered ``req`` (its callback has run).

        Otherwise ``req.callback`` is wrapped to store the response that completes
        the request; the request must then be run as usual.
        """
        t0 = time.monotonic_ns()
        tag = self.cache_tag()
        key = cache.key(self.name, self.version, req, tag)
        hit = cache.lookup(key, req)
        if hit is not None:
            hit.model_name, hit.model_version, hit.id = self.name, self.version, req.id
            dt = time.monotonic_ns() - t0
            total = time.monotonic_ns() - req.arrival_ns
            with self.stats.lock:
                self.stats.cache_hit.add(dt)
                self.stats.success.add(total)
                self.stats.last_inference_ms = int(time.time() * 1000)
            trace = req.trace
            if trace is not None:  # answered from the cache: no queue, no compute
                req.trace = None
                trace.stamp("REQUEST_START", req.arrival_ns)
                trace.stamp("REQUEST_END", time.monotonic_ns())
                trace.done()
            summaries = self.stats.summaries
            if summaries is not None:  # Triton counts cached requests in these two
                summaries.request.observe(total / 1000)
                summaries.queue.observe(0.0)
            cb = req.callback
            if cb is not None:
                cb(hit, RESPONSE_COMPLETE_FINAL)
            return True
        lookup_ns = time.monotonic_ns() - t0
        inner = req.callback
        stats = self.stats

        def store(resp: InferenceResponse | None, flags: int) -> None:
            t1 = time.monotonic_ns()
            # not when a load it depends on changed meanwhile (an ensemble's step may have
            # run another version than the key names)
            if resp is not None and resp.error is None and self.cache_tag() == tag:
                cache.insert(key, resp)
            with stats.lock:
                stats.cache_miss.add(lookup_ns + time.monotonic_ns() - t1)
            if inner is not None:
                inner(resp, flags)

        req.callback = store
        return False
