"""Prometheus metrics: Triton's names and format, one source of truth with the statistics."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client import Counter
from testing_backend import FAIL_VALUE, make_server

from triton_core import abi
from triton_core.frontends.metrics import MetricsFrontEnd, TritonCollector, format_families
from triton_core.request import InferenceRequest
from triton_core.tensor import Tensor
from triton_core.testing import LoopThread, wait_until


class _MetricsPlugin:
    @abi.hookimpl
    def triton_metric_families(self, registry):
        c = Counter("plugin_things", "Things a plugin counted", registry=registry)
        c.inc(3)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("metrics"))
    server.registry.register_plugin(_MetricsPlugin(), "metrics-plugin")
    loop = LoopThread()
    fe = MetricsFrontEnd(server, "127.0.0.1", 0, interval_ms=100)
    loop.run(fe.start())
    yield server, fe, loop
    loop.run(fe.stop())
    loop.close()
    server.stop()


def scrape(fe) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{fe.port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pat = "^" + re.escape(f"{name}{{{lab}}}" if lab else name) + r" (\S+)\n"
    m = re.search(pat, text, re.M)
    assert m, f"no sample {name}{labels} in:\n{text}"
    return float(m.group(1))


def infer(server, a, model="simple"):
    b = np.ones_like(a)
    req = InferenceRequest(model, inputs={"INPUT0": Tensor.from_numpy("INPUT0", a),
                                          "INPUT1": Tensor.from_numpy("INPUT1", b)})
    return server.infer(req, timeout=30)


def test_format_is_triton(env):
    server, fe, _ = env
    text = scrape(fe)
    assert "# TYPE nv_inference_request_success counter\n" in text
    assert "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes\n" \
        in text
    assert "# TYPE nv_inference_pending_request_count gauge\n" in text
    assert not re.search(r"^(# TYPE )?nv_\w*_total[{ ]", text, re.M)  # no _total suffix, as Triton
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        value(text, "nv_inference_request_failure", model="simple", reason=reason, version="1")
    for name in ("nv_inference_count", "nv_inference_exec_count", "nv_inference_request_duration_us",
                 "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
                 "nv_inference_pending_request_count", "nv_model_load_duration_secs"):
        value(text, name, model="simple", version="1")
    assert 0.0 <= value(text, "nv_cpu_utilization") <= 1.0
    assert value(text, "nv_cpu_memory_total_bytes") >= value(text, "nv_cpu_memory_used_bytes") > 0
    # plugin families through the triton_metric_families hook
    assert value(text, "plugin_things_total") == 3


def test_counts_move_with_success_and_failure(env):
    server, fe, _ = env
    before = scrape(fe)
    lab = {"model": "simple", "version": "1"}
    infer(server, np.zeros((2, 16), dtype=np.int32))
    infer(server, np.zeros((1, 16), dtype=np.int32))
    with pytest.raises(Exception, match="failing value"):
        infer(server, np.full((1, 16), FAIL_VALUE, dtype=np.int32))
    after = scrape(fe)

    def d(name, **extra):
        return value(after, name, **lab, **extra) - value(before, name, **lab, **extra)

    assert d("nv_inference_request_success") == 2
    assert d("nv_inference_request_failure", reason="BACKEND") == 1
    assert d("nv_inference_request_failure", reason="OTHER") == 0
    assert d("nv_inference_count") == 4  # batch sizes 2 + 1 + 1 (the failed execution ran too)
    assert d("nv_inference_exec_count") == 3
    assert d("nv_inference_request_duration_us") > 0
    assert d("nv_inference_compute_infer_duration_us") >= 0
    assert value(after, "nv_inference_pending_request_count", **lab) == 0
    # one source of truth: the statistics extension says the same
    st = server.statistics("simple")["model_stats"][0]
    assert st["inference_stats"]["success"]["count"] == value(after, "nv_inference_request_success", **lab)
    assert st["execution_count"] == value(after, "nv_inference_exec_count", **lab)


def test_pending_gauge_returns_to_zero(env):
    server, fe, _ = env
    lab = {"model": "slow", "version": "1"}
    threads = [threading.Thread(target=infer, args=(server, np.zeros((16,), dtype=np.int32), "slow"))
               for _ in range(3)]
    for t in threads:
        t.start()
    # one executes for SLOW_MS while the others wait: the gauge shows them
    wait_until(lambda: value(scrape(fe), "nv_inference_pending_request_count", **lab) >= 2,
               "two requests pending")
    for t in threads:
        t.join(10)
    after = scrape(fe)
    assert value(after, "nv_inference_pending_request_count", **lab) == 0
    assert value(after, "nv_inference_request_success", **lab) >= 3
    assert value(after, "nv_inference_queue_duration_us", **lab) > 0


def test_http_edges(env):
    _, fe, _ = env
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{fe.port}/other", timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{fe.port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_unloaded_model_disappears(tmp_path):
    server = make_server(tmp_path)
    try:
        coll = TritonCollector(server, cpu_metrics=False)
        text = format_families(coll.collect())
        assert 'model="simple_string"' in text
        server.unload_model("simple_string")
        text = format_families(coll.collect())
        assert 'model="simple_string"' not in text
        assert "nv_cpu_utilization" not in text
    finally:
        server.stop()


# --metrics-config -------------------------------------------------------------------

@pytest.fixture
def served(tmp_path, request):
    server = make_server(tmp_path, metrics_config=request.param)
    loop = LoopThread()
    fe = MetricsFrontEnd(server, "127.0.0.1", 0, interval_ms=100)
    loop.run(fe.start())
    yield server, fe
    loop.run(fe.stop())
    loop.close()
    server.stop()


@pytest.mark.parametrize("served", [{"summary_latencies": "true",
                                     "summary_quantiles": "0.5:0.05,0.9:0.01"}], indirect=True)
def test_summaries_count_every_request(served):
    server, fe = served
    for _ in range(5):
        infer(server, np.arange(16, dtype=np.int32).reshape(1, 16))
    text = scrape(fe)
    assert "# TYPE nv_inference_request_summary_us summary\n" in text
    labels = {"model": "simple", "version": "1"}
    assert value(text, "nv_inference_request_summary_us_count", **labels) == 5
    assert value(text, "nv_inference_queue_summary_us_count", **labels) == 5
    p50 = value(text, "nv_inference_request_summary_us", quantile="0.5", **labels)
    p90 = value(text, "nv_inference_request_summary_us", quantile="0.9", **labels)
    assert 0 < p50 <= p90
    # the counters are still there (counter_latencies defaults to true)
    assert value(text, "nv_inference_request_duration_us", **labels) > 0


@pytest.mark.parametrize("served", [{"counter_latencies": "false"}], indirect=True)
def test_counter_latencies_false_drops_the_duration_counters(served):
    server, fe = served
    infer(server, np.arange(16, dtype=np.int32).reshape(1, 16))
    text = scrape(fe)
    assert "nv_inference_request_duration_us" not in text
    assert "nv_inference_request_summary_us" not in text  # summaries are off by default
    assert value(text, "nv_inference_request_success", model="simple", version="1") == 1


@pytest.mark.parametrize("served", [{"histogram_latencies": "true"}], indirect=True)
def test_first_response_histogram(served):
    server, fe = served
    for _ in range(3):
        infer(server, np.arange(16, dtype=np.int32).reshape(1, 16))
    text = scrape(fe)
    labels = {"model": "simple", "version": "1"}
    assert "# TYPE nv_inference_first_response_histogram_ms histogram\n" in text
    assert value(text, "nv_inference_first_response_histogram_ms_count", **labels) == 3
    assert value(text, "nv_inference_first_response_histogram_ms_bucket", le="+Inf", **labels) == 3
    assert value(text, "nv_inference_first_response_histogram_ms_bucket", le="5000", **labels) == 3
