"""Per model version statistics in the shape of Triton's statistics extension."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .inflight import InFlight
from .latency_summary import Histogram, LatencySummaries


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, n: int = 1) -> None:
        self.count += n
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchStat:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


class ModelStats:
    """Cumulative counts; the statistics endpoints and the metrics read the same object."""

    def __init__(self, inflight: InFlight | None = None) -> None:
        self.lock = threading.Lock()
        self._inflight = inflight
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = Duration()
        self.fail = Duration()
        self.fail_by_reason = {r: 0 for r in FAILURE_REASONS}
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.cache_hit = Duration()
        # --metrics-config summary_latencies=true: set by the model manager
        self.summaries: LatencySummaries | None = None
        # --metrics-config histogram_latencies=true: time to each request's first response
        self.first_response: Histogram | None = None
        self.cache_miss = Duration()
        self.batch: dict[int, BatchStat] = {}

    @property
    def pending(self) -> int:
        """Requests queued or executing (nv_inference_pending_request_count): the version's
        in-flight count, never kept by hand."""
        return int(self._inflight) if self._inflight is not None else 0

    def record_execution(
        self,
        batch_size: int,
        n_requests: int,
        queue_ns: list[int],
        request_ns: list[int],
        ok: list[bool],
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
        fail_reason: str = "BACKEND",
    ) -> None:
        with self.lock:
            self.last_inference_ms = int(time.time() * 1000)
            self.execution_count += 1
            self.inference_count += batch_size
            b = self.batch.get(batch_size)
            if b is None:
                b = self.batch[batch_size] = BatchStat()
            b.compute_input.add(compute_input_ns)
            b.compute_infer.add(compute_infer_ns)
            b.compute_output.add(compute_output_ns)
            for q, total, good in zip(queue_ns, request_ns, ok, strict=True):
                if good:
                    self.success.add(total)
                    self.queue.add(q)
                    self.compute_input.add(compute_input_ns)
                    self.compute_infer.add(compute_infer_ns)
                    self.compute_output.add(compute_output_ns)
                else:
                    self.fail.add(total)
                    self.fail_by_reason[fail_reason] += 1
        summaries = self.summaries
        if summaries is not None:  # outside the lock: the summaries have their own
            for q, total, good in zip(queue_ns, request_ns, ok, strict=True):
                if good:
                    summaries.request.observe(total / 1000)
                    summaries.queue.observe(q / 1000)
                    summaries.compute_input.observe(compute_input_ns / 1000)
                    summaries.compute_infer.observe(compute_infer_ns / 1000)
                    summaries.compute_output.observe(compute_output_ns / 1000)

    def record_failure(self, request_ns: int, reason: str) -> None:
        """A request that failed before it reached a backend (rejected, cancelled)."""
        with self.lock:
            self.fail.add(request_ns)
            self.fail_by_reason[reason if reason in self.fail_by_reason else "OTHER"] += 1

    def as_dict(self, name: str, version: int) -> dict:
        with self.lock:
            return {
                "name": name,
                "version": str(version),
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.as_dict(),
                    "fail": self.fail.as_dict(),
                    "queue": self.queue.as_dict(),
                    "compute_input": self.compute_input.as_dict(),
                    "compute_infer": self.compute_infer.as_dict(),
                    "compute_output": self.compute_output.as_dict(),
                    "cache_hit": self.cache_hit.as_dict(),
                    "cache_miss": self.cache_miss.as_dict(),
                },
                "response_stats": {},
                "batch_stats": [
                    {
                        "batch_size": bs,
                        "compute_input": b.compute_input.as_dict(),
                        "compute_infer": b.compute_infer.as_dict(),
                        "compute_output": b.compute_output.as_dict(),
                    }
                    for bs, b in sorted(self.batch.items())
                ],
                "memory_usage": [],
            }
