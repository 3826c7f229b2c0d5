"""Latency summaries (``--metrics-config summary_latencies=true``): Triton's
nv_inference_*_summary_us, quantiles over a sliding time window.

Like prometheus-cpp's summaries (what Triton uses), the window is ``max_age`` seconds
(60) kept as ``age_buckets`` (5) rotating buckets, so observations leave the quantiles
about a minute after they were made; count and sum cover every observation. Each bucket
keeps a uniform sample of at most ``SAMPLE_SIZE`` observations (reservoir sampling), so
memory stays bounded under any load: the quantiles are exact below that many requests per
bucket and otherwise off by about 1/sqrt(SAMPLE_SIZE * buckets) in rank (0.7 % here).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable

from ..errors import TritonError

SAMPLE_SIZE = 4096
DEFAULT_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.001))
MAX_AGE_S = 60.0
AGE_BUCKETS = 5

# summary name -> Triton's help text
SUMMARIES = {
    "nv_inference_request_summary_us":
        "Summary of inference request duration in microseconds (includes cached requests)",
    "nv_inference_queue_summary_us":
        "Summary of inference queuing duration in microseconds (includes cached requests)",
    "nv_inference_compute_input_summary_us":
        "Summary of compute input duration in microseconds (does not include cached requests)",
    "nv_inference_compute_infer_summary_us":
        "Summary of compute inference duration in microseconds (does not include cached requests)",
    "nv_inference_compute_output_summary_us":
        "Summary of inference compute output duration in microseconds (does not include cached "
        "requests)",
}


def parse_quantiles(text: str) -> tuple[tuple[float, float], ...]:
    """``summary_quantiles``: "<quantile>:<error>,..." (Triton's format)."""
    out: list[tuple[float, float]] = []
    for part in text.split(","):
        q, sep, err = part.strip().partition(":")
        try:
            qv, ev = float(q), float(err)
        except ValueError:
            raise TritonError.invalid_arg(
                f"--metrics-config summary_quantiles: '{part}' is not <quantile>:<error>") from None
        if not sep or not 0.0 <= qv <= 1.0 or not 0.0 <= ev <= 1.0:
            raise TritonError.invalid_arg(
                f"--metrics-config summary_quantiles: '{part}': quantile and error must be "
                "between 0 and 1")
        out.append((qv, ev))
    return tuple(out)


class SlidingQuantiles:
    """Quantiles of the observations of the last ``max_age`` seconds, plus count and sum."""

    def __init__(self, quantiles: Iterable[float], max_age_s: float = MAX_AGE_S,
                 age_buckets: int = AGE_BUCKETS, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.quantiles = tuple(quantiles)
        self._clock = clock
        self._rotate_s = max_age_s / age_buckets
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # each bucket: [sample, observations seen]; the newest last
        self._buckets: list[list] = [[[], 0] for _ in range(age_buckets)]
        self._next_rotation = clock() + self._rotate_s
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._rotate()
            self.count += 1
            self.sum += value
            for bucket in self._buckets:  # every bucket in the window sees it
                sample, seen = bucket
                bucket[1] = seen = seen + 1
                if len(sample) < SAMPLE_SIZE:
                    sample.append(value)
                else:
                    j = self._rng.randrange(seen)
                    if j < SAMPLE_SIZE:
                        sample[j] = value

    def snapshot(self) -> tuple[int, float, list[tuple[float, float]]]:
        """(count, sum, [(quantile, value)]); NaN values when the window is empty."""
        with self._lock:
            self._rotate()
            values = sorted(self._buckets[0][0])  # the oldest bucket spans the whole window
            count, total = self.count, self.sum
        out = []
        for q in self.quantiles:
            if not values:
                out.append((q, float("nan")))
                continue
            idx = min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))
            out.append((q, values[idx]))
        return count, total, out

    def _rotate(self) -> None:
        now = self._clock()
        while now >= self._next_rotation:
            # the oldest bucket leaves the window; a fresh one starts as the newest
            self._buckets.pop(0)
            self._buckets.append([[], 0])
            self._next_rotation += self._rotate_s


class LatencySummaries:
    """The five latency summaries of one model version."""

    def __init__(self, quantiles: Iterable[tuple[float, float]] = DEFAULT_QUANTILES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        qs = [q for q, _ in quantiles]
        self.by_name = {name: SlidingQuantiles(qs, clock=clock) for name in SUMMARIES}
        self.request = self.by_name["nv_inference_request_summary_us"]
        self.queue = self.by_name["nv_inference_queue_summary_us"]
        self.compute_input = self.by_name["nv_inference_compute_input_summary_us"]
        self.compute_infer = self.by_name["nv_inference_compute_infer_summary_us"]
        self.compute_output = self.by_name["nv_inference_compute_output_summary_us"]


FIRST_RESPONSE_HISTOGRAM = "nv_inference_first_response_histogram_ms"
FIRST_RESPONSE_HELP = "Duration from request to first response in milliseconds"
FIRST_RESPONSE_BUCKETS = (100.0, 500.0, 2000.0, 5000.0)  # Triton's, in ms


class Histogram:
    """A cumulative histogram (``histogram_latencies=true``: time to first response)."""

    def __init__(self, buckets: Iterable[float] = FIRST_RESPONSE_BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self._lock = threading.Lock()
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = 0
        while i < len(self.bounds) and value > self.bounds[i]:
            i += 1
        with self._lock:
            self._counts[i] += 1
            self.count += 1
            self.sum += value

    def snapshot(self) -> tuple[int, float, list[tuple[float, int]]]:
        """(count, sum, [(upper bound, cumulative count)], +Inf last)."""
        with self._lock:
            counts, count, total = list(self._counts), self.count, self.sum
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            out.append((bound, running))
        return count, total, out
