"""Prometheus metrics with Triton's names, served at :8002/metrics.

The per-model series are read at scrape time from the same ``ModelStats`` objects
the statistics extension answers from, so the two never disagree. CPU figures
are sampled every ``--metrics-interval-ms``, as are the GPU families (gpu_metrics.py).

Triton exports through prometheus-cpp: counters carry no ``_total`` suffix and
labels are sorted by name. prometheus_client's own text writer would rename
counters, so the core's families are written by ``format_families`` here; the
families plugins add (hook ``triton_metric_families``) go into a separate
``CollectorRegistry`` written by prometheus_client as usual.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..peers import Family, merge_families
from ..scheduling.latency_summary import (
    FIRST_RESPONSE_HELP,
    FIRST_RESPONSE_HISTOGRAM,
    SUMMARIES,
)
from .gpu_metrics import GpuSampler

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger("triton_core")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help); Triton's names and help texts.
_MODEL_COUNTERS = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_request_duration_us":
        "Cumulative inference request duration in microseconds (includes cached requests)",
    "nv_inference_queue_duration_us":
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
    "nv_inference_compute_input_duration_us":
        "Cumulative compute input duration in microseconds (does not include cached requests)",
    "nv_inference_compute_infer_duration_us":
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
    "nv_inference_compute_output_duration_us":
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
}
_LATENCY_COUNTERS = frozenset(n for n in _MODEL_COUNTERS if n.endswith("_duration_us"))
_CACHE_COUNTERS = {
    "nv_cache_num_hits_per_model": "Number of cache hits per model",
    "nv_cache_num_misses_per_model": "Number of cache misses per model",
    "nv_cache_hit_duration_per_model": "Total cache hit duration per model, in microseconds",
    "nv_cache_miss_duration_per_model":
        "Total cache miss (insert+lookup) duration per model, in microseconds",
}
# The server-wide gauges Triton's local cache reports through the metrics API
# (since 23.03 the core itself reports only the per-model counters above).
_CACHE_GAUGES = {
    "nv_cache_util": "Cache utilization [0.0 - 1.0]",
    "nv_cache_num_entries": "Number of responses stored in response cache",
    "nv_cache_num_hits": "Number of cache hits in response cache",
    "nv_cache_num_misses": "Number of cache misses in response cache",
    "nv_cache_num_lookups": "Number of cache lookups in response cache",
    "nv_cache_num_evictions": "Number of cache evictions in response cache",
    "nv_cache_lookup_duration": "Total cache lookup duration (hit and miss), in microseconds",
    "nv_cache_insertion_duration": "Total cache insertion duration, in microseconds",
}


class CpuSampler:
    """CPU utilization and memory, refreshed every metrics interval (as Triton polls them)."""

    def __init__(self) -> None:
        self.utilization = 0.0
        self.total = 0
        self.used = 0
        psutil.cpu_percent(interval=None)  # prime: the first call has no interval to measure
        self.sample()

    def sample(self) -> None:
        self.utilization = psutil.cpu_percent(interval=None) / 100.0
        vm = psutil.virtual_memory()
        self.total = int(vm.total)
        self.used = int(vm.total - vm.available)


def _us(ns: int) -> int:
    return ns // 1000


class TritonCollector(Collector):
    """Yields Triton's metric families from the server's live model statistics."""

    def __init__(self, server: Server, cpu: CpuSampler | None = None, *, model_metrics: bool = True,
                 cpu_metrics: bool = True, gpu: GpuSampler | None = None) -> None:
        self.server = server
        self.cpu = cpu if cpu is not None else (CpuSampler() if cpu_metrics else None)
        self.model_metrics = model_metrics
        self.gpu = gpu

    def _versions(self) -> Iterator[tuple[str, int, object, float]]:
        manager = self.server.manager
        for name, ver, lv in manager.loaded_versions():
            yield name, ver, lv, manager.load_seconds(name)

    def collect(self) -> Iterable[Metric]:
        if self.model_metrics:
            peers = getattr(self.server, "peers", None)
            if peers is None:
                yield from self._model_families()
            else:  # --frontend-processes N > 1: the sum over every process
                yield from _as_metrics(merge_families(
                    [self.model_families_here(), *peers.ask_others("model_families")]))
        cache = getattr(self.server, "response_cache", None)
        if cache is not None:
            yield from _cache_gauges(cache)
        if self.cpu is not None:
            for name, doc, value in (
                ("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", self.cpu.utilization),
                ("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", self.cpu.total),
                ("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", self.cpu.used),
            ):
                m = Metric(name, doc, "gauge")
                m.add_sample(name, {}, value)
                yield m
        if self.gpu is not None:
            yield from self.gpu.families()

    def model_families_here(self) -> list[Family]:
        """This process's per-model families, as plain values (peers.py sends them)."""
        return [(m.name, m.type, m.documentation, [(x.name, dict(x.labels), x.value)
                                                   for x in m.samples])
                for m in self._model_families()]

    def _model_families(self) -> Iterator[Metric]:
        config = getattr(self.server, "metrics_config", None)
        counters = config is None or config.counter_latencies
        fams = {n: Metric(n, doc, "counter") for n, doc in _MODEL_COUNTERS.items()
                if counters or n not in _LATENCY_COUNTERS}
        summaries = {n: Metric(n, doc, "summary") for n, doc in SUMMARIES.items()}
        any_summary = False
        first = Metric(FIRST_RESPONSE_HISTOGRAM, FIRST_RESPONSE_HELP, "histogram")
        pending = Metric("nv_inference_pending_request_count",
                         "Instantaneous number of pending requests awaiting execution per-model.", "gauge")
        load = Metric("nv_model_load_duration_secs", "Model load time in seconds", "gauge")
        cache = {n: Metric(n, doc, "counter") for n, doc in _CACHE_COUNTERS.items()}
        any_cache = False
        for name, ver, lv, load_secs in self._versions():
            labels = {"model": name, "version": str(ver)}
            s = lv.stats  # type: ignore[attr-defined]
            with s.lock:
                success_n, success_ns = s.success.count, s.success.ns
                by_reason = dict(s.fail_by_reason)
                values = {
                    "nv_inference_request_success": success_n,
                    "nv_inference_count": s.inference_count,
                    "nv_inference_exec_count": s.execution_count,
                    "nv_inference_request_duration_us": _us(success_ns),  # successes only, as Triton
                    "nv_inference_queue_duration_us": _us(s.queue.ns),
                    "nv_inference_compute_input_duration_us": _us(s.compute_input.ns),
                    "nv_inference_compute_infer_duration_us": _us(s.compute_infer.ns),
                    "nv_inference_compute_output_duration_us": _us(s.compute_output.ns),
                }
                pend = s.pending
                hits, misses = s.cache_hit, s.cache_miss
                cache_values = (hits.count, misses.count, _us(hits.ns), _us(misses.ns))
            for n, v in values.items():
                if n in fams:
                    fams[n].add_sample(n, labels, v)
            if s.first_response is not None:
                count, total, buckets = s.first_response.snapshot()
                for bound, n in buckets:
                    first.add_sample(FIRST_RESPONSE_HISTOGRAM + "_bucket",
                                     {**labels, "le": _value(bound)}, n)
                first.add_sample(FIRST_RESPONSE_HISTOGRAM + "_count", labels, count)
                first.add_sample(FIRST_RESPONSE_HISTOGRAM + "_sum", labels, round(total, 3))
            if s.summaries is not None:
                any_summary = True
                for n, sq in s.summaries.by_name.items():
                    count, total, qs = sq.snapshot()
                    fam = summaries[n]
                    fam.add_sample(n + "_count", labels, count)
                    fam.add_sample(n + "_sum", labels, round(total, 3))
                    for q, v in qs:
                        fam.add_sample(n, {**labels, "quantile": _value(q)}, round(v, 3))
            for reason, v in by_reason.items():
                fams["nv_inference_request_failure"].add_sample(
                    "nv_inference_request_failure", {**labels, "reason": reason}, v)
            pending.add_sample(pending.name, labels, pend)
            load.add_sample(load.name, labels, round(load_secs, 6))
            # As Triton: only for models that use the cache (enabled in the model's
            # config and a cache configured for the server).
            if getattr(lv, "cache", None) is not None:
                any_cache = True
                for (n, fam), v in zip(cache.items(), cache_values, strict=True):
                    fam.add_sample(n, labels, v)
        yield from fams.values()
        if any_summary:
            yield from summaries.values()
        if first.samples:
            yield first
        yield pending
        yield load
        if any_cache:
            yield from cache.values()


def _as_metrics(families: list[Family]) -> Iterator[Metric]:
    for name, typ, doc, samples in families:
        m = Metric(name, doc, typ)
        for sname, labels, value in samples:
            m.add_sample(sname, labels, value)
        yield m


def _cache_gauges(cache: Any) -> Iterator[Metric]:
    c = cache.counters()
    values = {
        "nv_cache_util": c["utilization"],
        "nv_cache_num_entries": c["entries"],
        "nv_cache_num_hits": c["hits"],
        "nv_cache_num_misses": c["misses"],
        "nv_cache_num_lookups": c["lookups"],
        "nv_cache_num_evictions": c["evictions"],
        "nv_cache_lookup_duration": _us(c["lookup_ns"]),
        "nv_cache_insertion_duration": _us(c["insert_ns"]),
    }
    for name, doc in _CACHE_GAUGES.items():
        m = Metric(name, doc, "gauge")
        m.add_sample(name, {}, values[name])
        yield m


# ---------------------------------------------------------------------------------
# text exposition (prometheus-cpp style)


def _escape_label(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n")


def _value(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def format_families(metrics: Iterable[Metric]) -> str:
    """Prometheus text format 0.0.4, names exactly as given, labels sorted by name."""
    out: list[str] = []
    for m in metrics:
        out.append(f"# HELP {m.name} {_escape_help(m.documentation)}\n")
        out.append(f"# TYPE {m.name} {m.type}\n")
        for s in m.samples:
            if s.labels:
                lab = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in sorted(s.labels.items()))
                out.append(f"{s.name}{{{lab}}} {_value(s.value)}\n")
            else:
                out.append(f"{s.name} {_value(s.value)}\n")
    return "".join(out)


class Metrics:
    """The metrics of one server: Triton's families plus whatever plugins register."""

    def __init__(self, server: Server, *, interval_ms: int = 2000, cpu_metrics: bool = True,
                 model_metrics: bool = True, gpu_metrics: bool = True) -> None:
        self.server = server
        self.interval_ms = interval_ms
        self.cpu = CpuSampler() if cpu_metrics else None
        # Triton's GPU families, where NVML finds GPUs (absent otherwise)
        self.gpu = GpuSampler(server.manager.gpus) if gpu_metrics else None
        self.collector = TritonCollector(server, self.cpu, model_metrics=model_metrics,
                                         cpu_metrics=cpu_metrics, gpu=self.gpu)
        self.plugin_registry = CollectorRegistry(auto_describe=False)
        try:
            server.registry.pm.hook.triton_metric_families(registry=self.plugin_registry)
        except Exception:  # a plugin's metrics must not take the endpoint down
            log.exception("a plugin failed to add its metric families")

    def render(self) -> bytes:
        text = format_families(self.collector.collect()).encode("utf-8")
        try:
            extra = generate_latest(self.plugin_registry)
        except Exception:
            log.exception("a plugin metric family failed to collect")
            extra = b""
        return text + extra

    def sample(self) -> None:
        if self.cpu is not None:
            self.cpu.sample()
        if self.gpu is not None:
            self.gpu.sample()


# ---------------------------------------------------------------------------------
# the HTTP endpoint: GET /metrics, on the same HTTP/1.1 server as the inference API

_EXPOSITION = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT = b"text/plain"


class _MetricsApp:
    """The one-route app the HTTP/1.1 server (http/server.py) runs for the metrics port."""

    max_input_size = 64 * 1024  # GET /metrics carries no body

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def handle(self, req: Any, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path != "/metrics":
            return 404, [(b"content-type", _TEXT)], b"not found\n"
        if req.method not in ("GET", "HEAD"):
            return 405, [(b"content-type", _TEXT)], b"method not allowed\n"
        body = await asyncio.to_thread(self.metrics.render)  # collectors may take a while
        return 200, [(b"content-type", _EXPOSITION)], b"" if req.method == "HEAD" else body


class MetricsFrontEnd:
    """Serves GET /metrics on ``address:port`` in the running event loop."""

    def __init__(self, server: Server, address: str = "0.0.0.0", port: int = 8002,
                 interval_ms: int = 2000, *, cpu_metrics: bool = True, model_metrics: bool = True,
                 gpu_metrics: bool = True) -> None:
        if interval_ms <= 0:
            raise ValueError("the metrics interval must be positive")
        self.address = address
        self.port = port
        self.metrics = Metrics(server, interval_ms=interval_ms, cpu_metrics=cpu_metrics,
                               model_metrics=model_metrics, gpu_metrics=gpu_metrics)
        self._server: asyncio.Server | None = None
        self._connections: set[Any] = set()
        self._poll: asyncio.Task | None = None

    async def start(self) -> None:
        from .http.server import serve_http

        try:
            self._server, self._connections = await serve_http(
                _MetricsApp(self.metrics), self.address, self.port, backlog=128)  # type: ignore[arg-type]
        except OSError as e:
            raise OSError(f"failed to start the metrics service on {self.address}:{self.port}: "
                          f"{e}") from e
        self.port = self._server.sockets[0].getsockname()[1]
        self._poll = asyncio.create_task(self._poll_loop())
        log.info("Started Metrics Service at %s:%d", self.address, self.port)

    async def _poll_loop(self) -> None:
        interval = self.metrics.interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.metrics.sample)
            except Exception:
                log.exception("metrics sampling failed")

    async def stop(self, grace: float | None = None) -> None:
        from .closing import close_connections

        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._server is not None:
            self._server.close()
            await close_connections(self._connections, grace=grace or 1.0)
            await self._server.wait_closed()
            self._server = None
