"""The response cache across reloads: a model reloaded under the same version (new
files) must answer with its new results, never with entries the old load stored."""

import numpy as np
from test_ensemble_cache import CACHE, ENABLE, ens_stats, inputs, repo
from test_sequence_ensemble_cache import SCALE

from expr_backend import make_server, write_model
from waiting import wait_until


def scale_stats(s) -> dict:
    return s.statistics("scale")["model_stats"][0]["inference_stats"]


def test_a_model_reloaded_under_the_same_version_misses(tmp_path):
    r = repo(tmp_path, scale=SCALE + ENABLE)
    a = {"A": np.arange(16, dtype=np.int32).reshape(1, 16)}
    with make(r) as s:
        m = s.model("scale")
        np.testing.assert_array_equal(m.infer(a)["B"], a["A"] * 10)
        np.testing.assert_array_equal(m.infer(a)["B"], a["A"] * 10)
        assert scale_stats(s)["cache_hit"]["count"] == 1
        old = s.manager.get("scale")
        write_model(tmp_path, "scale", SCALE.replace("A * 10", "A * 20") + ENABLE)
        s.manager.load("scale")
        assert s.manager.get("scale") is not old and s.manager.get("scale").version == 1
        np.testing.assert_array_equal(m.infer(a)["B"], a["A"] * 20)  # not the old entry
        np.testing.assert_array_equal(m.infer(a)["B"], a["A"] * 20)  # the new load's entry
        st = scale_stats(s)  # statistics start over with the new load
        assert st["cache_miss"]["count"] == 1 and st["cache_hit"]["count"] == 1


def test_an_ensemble_misses_after_a_composing_model_reloads(tmp_path):
    r = repo(tmp_path)  # the ensemble caches, its steps do not
    with make(r) as s:
        m = s.model("a_ens")
        first = m.infer(inputs())
        assert np.array_equal(m.infer(inputs())["SUM"], first["SUM"])
        assert ens_stats(s)["inference_stats"]["cache_hit"]["count"] == 1
        write_model(tmp_path, "scale", SCALE.replace("A * 10", "A * 20"))
        s.manager.load("scale")
        after = m.infer(inputs())
        assert not np.array_equal(after["SUM"], first["SUM"])  # scale's new result
        inf = ens_stats(s)["inference_stats"]
        assert inf["cache_hit"]["count"] == 1 and inf["cache_miss"]["count"] == 2
        np.testing.assert_array_equal(m.infer(inputs())["SUM"], after["SUM"])
        assert ens_stats(s)["inference_stats"]["cache_hit"]["count"] == 2


def make(r):
    return make_server(r, cache_config=CACHE)


def test_an_ensemble_result_is_not_stored_when_a_step_reloads_during_the_request(tmp_path):
    import threading

    import expr_backend

    blocking = SCALE + 'parameters { key: "block_value" value { string_value: "7" } }\n'
    r = repo(tmp_path, scale=blocking)  # the ensemble caches; scale waits on GATE for a 7
    seven = {"IN0": np.full((1, 16), 7, np.int32), "IN1": np.ones((1, 16), np.int32)}
    with make(r) as s:
        old = s.manager.get("scale")
        expr_backend.GATE.clear()
        try:
            got: list = []
            run = threading.Thread(target=lambda: got.append(s.model("a_ens").infer(seven)))
            run.start()
            wait_until(lambda: old.instances[0].blocked == 1)
            write_model(tmp_path, "scale", blocking.replace("A * 10", "A * 20"))
            load = threading.Thread(target=s.manager.load, args=("scale",))
            load.start()  # the new load is READY at once; the old one drains
            wait_until(lambda: s.manager.get("scale") is not old)
        finally:
            expr_backend.GATE.set()
        run.join(10)
        load.join(10)
        assert got and "SUM" in got[0]  # answered (its blocked step ran on the old load)
        assert len(s.response_cache) == 0  # its result names a load no longer there
