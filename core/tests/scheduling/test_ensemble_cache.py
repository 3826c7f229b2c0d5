# ruff: noqa: E501  (model configs read best on one line each)
"""Response cache for ensembles: the ensemble's final response is cached under its own
name and version; a hit runs no composing model."""

import asyncio
import json
import logging
import re
import urllib.request

import numpy as np
import pytest
from test_sequence_ensemble_cache import DAG_IN, DAG_OUT, DAG_STEPS, SCALE, ens_cfg

from expr_backend import ADD_SUB, REPEAT_DECOUPLED, make_server, write_model
from live_server import serving_http
from triton_core import InferenceRequest, Tensor, TritonError
from triton_core.frontends.metrics import Metrics
from waiting import wait_until

CACHE = {"local": {"size": "1048576"}}
ENABLE = "response_cache { enable: true }\n"

ENSEMBLE = ens_cfg(DAG_STEPS, DAG_IN, DAG_OUT)


def repo(tmp_path, ens: str = ENSEMBLE + ENABLE, add: str = ADD_SUB, scale: str = SCALE):
    write_model(tmp_path, "add", add)
    write_model(tmp_path, "scale", scale)
    write_model(tmp_path, "a_ens", ens)  # sorts before its parts
    return tmp_path


def executions(s) -> dict[str, tuple[int, int, int]]:
    """Executions and successes of the composing models (and instance calls)."""
    st = {m["name"]: m for m in s.statistics()["model_stats"]}
    return {n: (st[n]["execution_count"], st[n]["inference_stats"]["success"]["count"],
                len(s.manager.get(n).instances[0].calls)) for n in ("add", "scale")}


def ens_stats(s) -> dict:
    return s.statistics("a_ens")["model_stats"][0]


def inputs(x: int = 0, rows: int = 1) -> dict[str, np.ndarray]:
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16) + x
    return {"IN0": a, "IN1": np.ones((rows, 16), np.int32)}


def sample(text: str, name: str, labels: str) -> float | None:
    m = re.search("^" + re.escape(f"{name}{{{labels}}}") + r" (\S+)$", text, re.M)
    return None if m is None else float(m.group(1))


def test_hit_skips_composing_models_with_identical_outputs(tmp_path):
    with make_server(repo(tmp_path), cache_config=CACHE) as s:
        assert s.manager.get("a_ens").cache is s.response_cache
        m = s.model("a_ens")
        first = m.infer(inputs(rows=2))  # miss: every step runs
        ran = executions(s)
        assert ran["scale"][0] == 2 and ran["add"][0] == 1
        r = s.infer(InferenceRequest(model_name="a_ens", id="again", inputs={
            n: Tensor.from_numpy(n, v) for n, v in inputs(rows=2).items()}))  # hit
        assert (r.model_name, r.model_version, r.id) == ("a_ens", 1, "again")
        assert [t.name for t in r.outputs] == ["SUM", "DIFF"]
        for t in r.outputs:
            np.testing.assert_array_equal(t.as_numpy(), first[t.name])
        assert executions(s) == ran  # no composing model saw the request
        st = ens_stats(s)
        inf = st["inference_stats"]
        assert inf["cache_hit"]["count"] == 1 and inf["cache_miss"]["count"] == 1
        assert inf["cache_hit"]["ns"] > 0 and inf["cache_miss"]["ns"] > 0
        assert inf["success"]["count"] == 2
        assert st["execution_count"] == 1 and st["inference_count"] == 2  # the hit ran nothing
        text = Metrics(s, cpu_metrics=False).render().decode()
        ens = 'model="a_ens",version="1"'
        assert sample(text, "nv_cache_num_hits_per_model", ens) == 1
        assert sample(text, "nv_cache_num_misses_per_model", ens) == 1
        assert sample(text, "nv_inference_request_success", ens) == 2
        assert sample(text, "nv_inference_exec_count", ens) == 1
        # the composing models do not enable the cache: no cache series of theirs
        assert sample(text, "nv_cache_num_hits_per_model", 'model="add",version="1"') is None


def test_different_inputs_or_outputs_miss(tmp_path):
    with make_server(repo(tmp_path), cache_config=CACHE) as s:
        m = s.model("a_ens")
        base = m.infer(inputs(0))
        other = m.infer(inputs(1))  # other input data: a miss
        np.testing.assert_array_equal(other["SUM"], base["SUM"] + 10)
        m.infer({"IN0": inputs(0)["IN0"], "IN1": inputs(0)["IN1"] * 2})
        only = m.infer(inputs(0), outputs=["DIFF"])  # other requested outputs: a miss
        assert list(only) == ["DIFF"]
        np.testing.assert_array_equal(only["DIFF"], base["DIFF"])
        inf = ens_stats(s)["inference_stats"]
        assert inf["cache_hit"]["count"] == 0 and inf["cache_miss"]["count"] == 4
        assert executions(s)["add"][0] == 4
        assert list(m.infer(inputs(0), outputs=["DIFF"])) == ["DIFF"]  # now a hit
        assert ens_stats(s)["inference_stats"]["cache_hit"]["count"] == 1
        assert executions(s)["add"][0] == 4


def test_errors_are_not_cached(tmp_path):
    with make_server(repo(tmp_path), cache_config=CACHE) as s:
        bad = {"IN0": np.full((1, 16), -1, np.int32), "IN1": np.ones((1, 16), np.int32)}
        for _ in range(2):
            with pytest.raises(TritonError, match="failing value -1"):
                s.model("a_ens").infer(bad)
        st = ens_stats(s)
        assert st["inference_stats"]["fail"]["count"] == 2
        assert st["inference_stats"]["cache_hit"]["count"] == 0
        assert st["inference_stats"]["cache_miss"]["count"] == 2
        assert len(s.response_cache) == 0
        # the failing steps ran both times (two scale steps a request)
        fails = s.statistics("scale")["model_stats"][0]["inference_stats"]["fail"]["count"]
        assert fails == 4


def test_composing_models_cache_on_their_own(tmp_path):
    # Only the composing models enable the cache: the ensemble runs every time,
    # its steps answer from the cache.
    with make_server(repo(tmp_path, ens=ENSEMBLE, add=ADD_SUB + ENABLE, scale=SCALE + ENABLE),
                     cache_config=CACHE) as s:
        assert s.manager.get("a_ens").cache is None
        m = s.model("a_ens")
        first = m.infer(inputs())
        ran = executions(s)
        again = m.infer(inputs())
        np.testing.assert_array_equal(again["SUM"], first["SUM"])
        assert [c for c, _, _ in executions(s).values()] == [c for c, _, _ in ran.values()]
        st = ens_stats(s)
        assert st["execution_count"] == 2
        assert st["inference_stats"]["cache_hit"]["count"] == 0
        assert s.statistics("add")["model_stats"][0]["inference_stats"]["cache_hit"]["count"] == 1
    # Both enable it: each keeps its own entries; an ensemble miss may hit at a step.
    with make_server(repo(tmp_path, ens=ENSEMBLE + ENABLE, add=ADD_SUB + ENABLE, scale=SCALE + ENABLE),
                     cache_config=CACHE) as s:
        m = s.model("a_ens")
        m.infer(inputs())
        m.infer(inputs(), outputs=["SUM"])  # another ensemble key, same step inputs
        assert ens_stats(s)["inference_stats"]["cache_miss"]["count"] == 2
        add = s.statistics("add")["model_stats"][0]
        assert add["inference_stats"]["cache_hit"]["count"] == 1 and add["execution_count"] == 1
        assert len(s.response_cache) == 2 + 2 + 1  # ensemble: 2, scale: 2, add: 1


def test_no_cache_without_server_cache_or_config(tmp_path):
    with make_server(repo(tmp_path)) as s:  # no --cache-config
        assert s.manager.get("a_ens").cache is None
        s.model("a_ens").infer(inputs())
        s.model("a_ens").infer(inputs())
        assert executions(s)["add"][0] == 2
        assert "nv_cache" not in Metrics(s, cpu_metrics=False).render().decode()


def test_hit_through_the_async_front_end_path(tmp_path):
    with make_server(repo(tmp_path), cache_config=CACHE) as s:
        def req() -> InferenceRequest:
            return InferenceRequest(model_name="a_ens", inputs={
                n: Tensor.from_numpy(n, v) for n, v in inputs().items()})

        async def twice():
            return await s.infer_async(req()), await s.infer_async(req())

        a, b = asyncio.run(twice())
        np.testing.assert_array_equal(a.output("SUM").as_numpy(), b.output("SUM").as_numpy())
        assert ens_stats(s)["inference_stats"]["cache_hit"]["count"] == 1
        assert executions(s)["add"][0] == 1


def test_hit_over_http(tmp_path):
    body = json.dumps({"inputs": [
        {"name": n, "datatype": "INT32", "shape": list(v.shape), "data": v.reshape(-1).tolist()}
        for n, v in inputs().items()]}).encode()
    with make_server(repo(tmp_path), cache_config=CACHE) as s, serving_http(s) as addr:
        answers = []
        for _ in range(2):
            r = urllib.request.Request(f"http://{addr}/v2/models/a_ens/infer", data=body,
                                       headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(r, timeout=20) as resp:
                answers.append(json.loads(resp.read()))
        assert answers[0] == answers[1] and answers[0]["model_name"] == "a_ens"
        assert ens_stats(s)["inference_stats"]["cache_hit"]["count"] == 1
        assert executions(s)["add"][0] == 1


# decoupled ensembles and ensembles of sequence models are never cached -------------------------

DECOUPLED_ENSEMBLE = """
platform: "ensemble"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "TOK" data_type: TYPE_INT32 dims: [-1] }]
ensemble_scheduling { step [ { model_name: "repeat" model_version: -1 input_map { key: "IN" value: "IN" } output_map { key: "OUT" value: "TOK" } } ] }
response_cache { enable: true }
"""


def test_decoupled_ensemble_is_not_cached(tmp_path, caplog):
    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    write_model(tmp_path, "dec_ens", DECOUPLED_ENSEMBLE)
    with caplog.at_level(logging.WARNING, logger="triton_core"), \
            make_server(tmp_path, cache_config=CACHE) as s:
        ev = s.manager.get("dec_ens")
        assert ev.decoupled and ev.cache is None  # it loads, uncached
        for _ in range(2):
            req = InferenceRequest(model_name="dec_ens", inputs={
                "IN": Tensor.from_numpy("IN", np.array([1, 2], np.int32))})
            got = [r.output("TOK").as_numpy().tolist()
                   for r, _ in s.infer_iter(req, timeout=20) if r is not None]
            assert got == [[0, 0], [1, 2], [2, 4]]
        # A decoupled step's statistics are recorded when its execute returns, which may be
        # after the client saw its final response.
        wait_until(lambda: s.statistics("repeat")["model_stats"][0]["inference_stats"]
                   ["success"]["count"] == 2, "both runs of the decoupled step recorded")
        assert s.response_cache.lookups == 0 and len(s.response_cache) == 0
        st = s.statistics("dec_ens")["model_stats"][0]["inference_stats"]
        assert st["cache_hit"]["count"] == 0 and st["cache_miss"]["count"] == 0
        assert "nv_cache_num_hits_per_model" not in Metrics(s, cpu_metrics=False).render().decode()
    assert "ensemble 'dec_ens' version 1: response cache not used: it is decoupled" in caplog.text


SEQUENCE = """
backend: "expr"
max_batch_size: 0
input [{ name: "A" data_type: TYPE_INT32 dims: [16] }]
output [{ name: "B" data_type: TYPE_INT32 dims: [16] }]
sequence_batching { }
parameters { key: "B" value { string_value: "A * 10" } }
"""


def test_ensemble_with_a_sequence_step_is_not_cached(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="triton_core"), \
            make_server(repo(tmp_path, scale=SEQUENCE), cache_config=CACHE) as s:
        assert s.model_ready("a_ens") and s.manager.get("a_ens").cache is None
    assert "composing model 'scale' uses sequence batching" in caplog.text
