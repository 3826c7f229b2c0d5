"""Custom metrics of Python models (pb_utils.MetricFamily / Metric), held in the server.

Workers create families and metrics and send updates over their channel; this
store keeps the values, and ``PythonMetricsCollector`` reports them through
prometheus_client (the core's ``triton_metric_families`` hook adds it to the
registry the metrics endpoint serves). Families are shared by name across
instances and models, as in Triton; a family goes away when the last worker
that created it does.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from triton_core.errors import TritonError

COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
_KINDS = {COUNTER: "counter", GAUGE: "gauge", HISTOGRAM: "histogram"}


@dataclass
class _Series:
    labels: tuple[tuple[str, str], ...]
    buckets: tuple[float, ...] = ()
    value: float = 0.0
    counts: list[int] = field(default_factory=list)  # histogram: per bucket (not cumulative)
    total: float = 0.0
    count: int = 0
    owners: set = field(default_factory=set)


@dataclass
class _Family:
    name: str
    description: str
    kind: int
    series: dict[tuple, _Series] = field(default_factory=dict)
    owners: set = field(default_factory=set)


class MetricStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.families: dict[str, _Family] = {}
        self._fids: dict[tuple[Any, int], _Family] = {}
        self._mids: dict[tuple[Any, int], tuple[_Family, _Series]] = {}

    def add_family(self, owner: Any, fid: int, name: str, description: str, kind: int) -> None:
        if not name or not all(c.isalnum() or c in "_:" for c in name) or name[0].isdigit():
            raise TritonError.invalid_arg(f"invalid metric family name '{name}'")
        with self.lock:
            fam = self.families.get(name)
            if fam is None:
                fam = self.families[name] = _Family(name, description, kind)
            elif fam.kind != kind:
                raise TritonError.invalid_arg(
                    f"metric family '{name}' already exists as a {_KINDS[fam.kind]}")
            fam.owners.add(owner)
            self._fids[(owner, fid)] = fam

    def add_metric(self, owner: Any, mid: int, fid: int, labels: tuple, buckets: tuple) -> None:
        with self.lock:
            fam = self._fids.get((owner, fid))
            if fam is None:
                raise TritonError.invalid_arg("unknown metric family")
            key = tuple(tuple(x) for x in labels)
            s = fam.series.get(key)
            if s is None:
                b = tuple(sorted(float(x) for x in buckets))
                s = fam.series[key] = _Series(key, b, counts=[0] * (len(b) + 1))
            elif fam.kind == HISTOGRAM and tuple(sorted(buckets)) != s.buckets:
                raise TritonError.invalid_arg(
                    f"metric of family '{fam.name}' with these labels exists with other buckets")
            s.owners.add(owner)
            self._mids[(owner, mid)] = (fam, s)

    def update(self, owner: Any, mid: int, op: str, value: float) -> None:
        with self.lock:
            found = self._mids.get((owner, mid))
            if found is None:
                return
            _fam, s = found
            if op == "inc":
                s.value += value
            elif op == "set":
                s.value = value
            elif op == "observe":
                s.counts[bisect.bisect_left(s.buckets, value)] += 1
                s.total += value
                s.count += 1

    def value(self, owner: Any, mid: int) -> float:
        with self.lock:
            found = self._mids.get((owner, mid))
            if found is None:
                raise TritonError.invalid_arg("unknown metric")
            return found[1].value

    def drop_owner(self, owner: Any) -> None:
        """A worker went away: forget its handles and whatever only it kept alive."""
        with self.lock:
            for k in [k for k in self._mids if k[0] == owner]:
                fam, s = self._mids.pop(k)
                s.owners.discard(owner)
                if not s.owners:
                    fam.series.pop(s.labels, None)
            for k in [k for k in self._fids if k[0] == owner]:
                fam = self._fids.pop(k)
                fam.owners.discard(owner)
                if not fam.owners:
                    self.families.pop(fam.name, None)

    def snapshot(self) -> list[tuple[str, str, int, list[_Series]]]:
        with self.lock:
            return [(f.name, f.description, f.kind,
                     [_Series(s.labels, s.buckets, s.value, list(s.counts), s.total, s.count)
                      for s in f.series.values()])
                    for f in self.families.values()]


STORE = MetricStore()


class PythonMetricsCollector:
    """A prometheus_client collector reporting every Python model's custom metrics."""

    def __init__(self, store: MetricStore = STORE) -> None:
        self.store = store

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import Metric

        for name, description, kind, series in self.store.snapshot():
            m = Metric(name, description, _KINDS[kind])
            for s in series:
                labels = dict(s.labels)
                if kind == HISTOGRAM:
                    cum = 0
                    for bound, c in zip(list(s.buckets) + [math.inf], s.counts, strict=True):
                        cum += c
                        le = "+Inf" if bound == math.inf else _fmt(bound)
                        m.add_sample(name + "_bucket", {**labels, "le": le}, cum)
                    m.add_sample(name + "_count", labels, s.count)
                    m.add_sample(name + "_sum", labels, s.total)
                else:
                    m.add_sample(name, labels, s.value)
            yield m


def _fmt(x: float) -> str:
    return repr(float(x))
