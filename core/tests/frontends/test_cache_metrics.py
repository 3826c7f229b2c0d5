"""Response cache metrics: Triton's per-model counters and the local cache's server-wide gauges."""

import re

import numpy as np

from expr_backend import ADD_SUB, make_server, write_model
from triton_core.frontends.metrics import Metrics

CACHED = ADD_SUB + "response_cache { enable: true }\n"


def sample(text: str, name: str, labels: str = "") -> float | None:
    m = re.search("^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$", text, re.M)
    return None if m is None else float(m.group(1))


def test_local_cache_gauges_and_per_model_counters(tmp_path):
    write_model(tmp_path, "add", CACHED)
    write_model(tmp_path, "plain", ADD_SUB)
    with make_server(tmp_path, cache_config={"local": {"size": "300"}}) as s:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        m = s.model("add")
        m.infer({"INPUT0": a, "INPUT1": a})  # miss, stored (206 bytes with overhead)
        m.infer({"INPUT0": a, "INPUT1": a})  # hit
        m.infer({"INPUT0": a, "INPUT1": a}, outputs=["OUTPUT1"])  # miss; evicts the first
        m.infer({"INPUT0": a + 1, "INPUT1": a})  # miss; evicts the second
        m.infer({"INPUT0": a, "INPUT1": a})  # miss (evicted); evicts the third
        s.model("plain").infer({"INPUT0": a, "INPUT1": a})
        text = Metrics(s, cpu_metrics=False).render().decode()
        cache = s.response_cache
        assert "# TYPE nv_cache_util gauge\n" in text
        assert "# HELP nv_cache_num_entries Number of responses stored in response cache\n" in text
        assert sample(text, "nv_cache_num_lookups") == 5
        assert sample(text, "nv_cache_num_hits") == 1
        assert sample(text, "nv_cache_num_misses") == 4
        assert sample(text, "nv_cache_num_evictions") == 3
        assert sample(text, "nv_cache_num_entries") == 1
        assert sample(text, "nv_cache_util") == cache.used / 300 > 0
        assert cache.lookup_ns > 0 and cache.insert_ns > 0
        assert sample(text, "nv_cache_lookup_duration") == cache.lookup_ns // 1000
        assert sample(text, "nv_cache_insertion_duration") == cache.insert_ns // 1000
        add = 'model="add",version="1"'
        assert sample(text, "nv_cache_num_hits_per_model", add) == 1
        assert sample(text, "nv_cache_num_misses_per_model", add) == 4
        st = s.statistics("add")["model_stats"][0]["inference_stats"]
        assert sample(text, "nv_cache_hit_duration_per_model", add) == st["cache_hit"]["ns"] // 1000
        assert sample(text, "nv_cache_miss_duration_per_model", add) == st["cache_miss"]["ns"] // 1000
        assert ("# HELP nv_cache_miss_duration_per_model Total cache miss (insert+lookup) duration per "
                "model, in microseconds\n") in text
        # a model that does not use the cache has no cache series, as in Triton
        assert sample(text, "nv_cache_num_hits_per_model", 'model="plain",version="1"') is None


def test_no_cache_series_without_a_server_cache(tmp_path):
    write_model(tmp_path, "add", CACHED)  # asks for the cache, but the server has none
    with make_server(tmp_path) as s:
        a = np.zeros((1, 16), np.int32)
        s.model("add").infer({"INPUT0": a, "INPUT1": a})
        text = Metrics(s, cpu_metrics=False).render().decode()
        assert "nv_cache" not in text
        assert sample(text, "nv_inference_request_success", 'model="add",version="1"') == 1
