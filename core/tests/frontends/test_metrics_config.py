"""--metrics-config: the latency summaries' window and its settings; bad settings stop the
start (the endpoint's side is in test_metrics.py)."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from triton_core import ErrorCode, TritonError
from triton_core.scheduling.latency_summary import (
    SAMPLE_SIZE,
    Histogram,
    SlidingQuantiles,
    parse_quantiles,
)
from triton_core.scheduling.metrics_config import MetricsConfig, parse_flags


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_quantiles_of_the_window_and_totals_of_all():
    clock = Clock()
    sq = SlidingQuantiles([0.5, 0.9, 0.99], max_age_s=60, age_buckets=5, clock=clock)
    for v in range(1, 101):
        sq.observe(float(v))
    count, total, qs = sq.snapshot()
    assert (count, total) == (100, 5050.0)
    assert dict(qs) == {0.5: 50.0, 0.9: 90.0, 0.99: 99.0}
    clock.t = 61.0  # past the window: no quantile, the totals stay
    count, total, qs = sq.snapshot()
    assert (count, total) == (100, 5050.0) and all(math.isnan(v) for _, v in qs)
    sq.observe(7.0)
    assert dict(sq.snapshot()[2])[0.5] == 7.0


def test_older_observations_leave_the_window_bucket_by_bucket():
    clock = Clock()
    sq = SlidingQuantiles([1.0], max_age_s=60, age_buckets=5, clock=clock)
    sq.observe(1000.0)
    clock.t = 30.0
    sq.observe(1.0)
    assert dict(sq.snapshot()[2])[1.0] == 1000.0  # both within the window
    clock.t = 61.0
    assert dict(sq.snapshot()[2])[1.0] == 1.0  # the first one left


def test_memory_is_bounded_and_quantiles_stay_close_under_load():
    sq = SlidingQuantiles([0.5, 0.9], rng=random.Random(1))
    rng = random.Random(2)
    for _ in range(20 * SAMPLE_SIZE):
        sq.observe(rng.random())
    assert all(len(b[0]) <= SAMPLE_SIZE for b in sq._buckets)  # noqa: SLF001
    q = dict(sq.snapshot()[2])
    assert abs(q[0.5] - 0.5) < 0.03 and abs(q[0.9] - 0.9) < 0.03


def test_settings_are_parsed_with_triton_keys():
    cfg = MetricsConfig.parse(parse_flags(["summary_latencies=true",
                                           "summary_quantiles=0.5:0.05,0.99:0.001",
                                           "counter_latencies=false"]))
    assert cfg.summary_latencies and not cfg.counter_latencies
    assert cfg.summary_quantiles == ((0.5, 0.05), (0.99, 0.001))
    assert MetricsConfig.parse({}) == MetricsConfig()


@pytest.mark.parametrize("settings, code, words", [
    ({"summary_latencies": "maybe"}, ErrorCode.INVALID_ARG, "expected true or false"),
    ({"summary_quantiles": "0.5"}, ErrorCode.INVALID_ARG, "<quantile>:<error>"),
    ({"summary_quantiles": "1.5:0.1"}, ErrorCode.INVALID_ARG, "between 0 and 1"),
    ({"nope": "1"}, ErrorCode.INVALID_ARG, "unknown setting 'nope'"),
    ({"histogram_latencies": "sometimes"}, ErrorCode.INVALID_ARG, "expected true or false"),
])
def test_bad_settings_are_refused(settings, code, words):
    with pytest.raises(TritonError) as e:
        MetricsConfig.parse(settings)
    assert e.value.code is code and words in e.value.message


@pytest.mark.parametrize("flag", ["summary_latencies", "counter_latencies=x", "nope=1"])
def test_bad_flags_stop_the_start(flag, tmp_path):
    r = subprocess.run([sys.executable, "-m", "triton_core.cli", "--model-repository", str(tmp_path),
                        "--metrics-config", flag], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--metrics-config" in r.stderr, r.stderr


def test_parse_quantiles_keeps_the_order():
    assert parse_quantiles("0.9:0.01, 0.5:0.05") == ((0.9, 0.01), (0.5, 0.05))


def test_histogram_buckets_are_cumulative():
    h = Histogram((100.0, 500.0))
    for v in (1.0, 100.0, 101.0, 499.0, 10_000.0):
        h.observe(v)
    count, total, buckets = h.snapshot()
    assert count == 5 and total == 10_701.0
    assert buckets == [(100.0, 2), (500.0, 4), (float("inf"), 5)]
