"""``--metrics-config <key>=<value>``: which latency metrics the server keeps, Triton's keys.

- ``counter_latencies`` (true): the cumulative nv_inference_*_duration_us counters;
- ``summary_latencies`` (false): the nv_inference_*_summary_us summaries
  (scheduling/latency_summary.py), with ``summary_quantiles`` ("<q>:<error>,...");
- ``histogram_latencies`` (false): nv_inference_first_response_histogram_ms, the time from
  each request's arrival to its first response (Triton's buckets: 100, 500, 2000, 5000 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TritonError
from .latency_summary import DEFAULT_QUANTILES, parse_quantiles

KEYS = ("counter_latencies", "summary_latencies", "summary_quantiles", "histogram_latencies")


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "on", "yes"):
        return True
    if v in ("false", "0", "off", "no"):
        return False
    raise TritonError.invalid_arg(f"--metrics-config {key}={value}: expected true or false")


@dataclass(frozen=True)
class MetricsConfig:
    counter_latencies: bool = True
    summary_latencies: bool = False
    summary_quantiles: tuple[tuple[float, float], ...] = DEFAULT_QUANTILES
    histogram_latencies: bool = False

    @classmethod
    def parse(cls, settings: dict[str, str]) -> MetricsConfig:
        unknown = sorted(set(settings) - set(KEYS))
        if unknown:
            raise TritonError.invalid_arg(
                f"--metrics-config: unknown setting '{unknown[0]}' (known: {', '.join(KEYS)})")
        return cls(
            histogram_latencies=_bool("histogram_latencies",
                                      settings.get("histogram_latencies", "false")),
            counter_latencies=_bool("counter_latencies", settings.get("counter_latencies", "true")),
            summary_latencies=_bool("summary_latencies", settings.get("summary_latencies", "false")),
            summary_quantiles=(parse_quantiles(settings["summary_quantiles"])
                               if "summary_quantiles" in settings else DEFAULT_QUANTILES),
        )


def parse_flags(values: list[str]) -> dict[str, str]:
    """The ``--metrics-config`` flags as a dict (a later setting of a key wins)."""
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise TritonError.invalid_arg(f"--metrics-config '{v}': expected <setting>=<value>")
        out[key.strip()] = value.strip()
    return out
