import base64
import concurrent.futures
import json

import numpy as np
import pytest

from expr_backend import ADD_SUB, IDENTITY_BYTES, make_server, write_model
from triton_core import ErrorCode, InferenceRequest, Tensor, TritonError
from triton_core.testing import wait_until


def _add_inputs(batch=1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    return a, np.ones((batch, 16), np.int32)


@pytest.fixture
def repo(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    write_model(tmp_path, "strings", IDENTITY_BYTES)
    return tmp_path


def test_infer_in_process(repo):
    with make_server(repo) as s:
        a, b = _add_inputs()
        out = s.model("add").infer({"INPUT0": a, "INPUT1": b})
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        sout = s.model("strings").infer({"INPUT0": np.array([b"x", b"", b"\xff"], dtype=object)})
        assert list(sout["OUTPUT0"]) == [b"x", b"", b"\xff"]
        assert s.is_ready() and s.is_live()


def test_metadata_and_config(repo):
    with make_server(repo) as s:
        md = s.model_metadata("add")
        assert md["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
        assert md["platform"] == "expr_platform" and md["versions"] == ["1"]
        cfg = s.model_config_json("add")
        assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
        assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
        assert cfg["backend"] == "expr"


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"INPUT0": np.zeros((1, 16), np.int32)}, "missing required input(s) ['INPUT1']"),
        ({"INPUT0": np.zeros((1, 16), np.int32), "INPUT1": np.zeros((1, 16), np.int32),
          "X": np.zeros((1, 16), np.int32)}, "unexpected inference input 'X'"),
        ({"INPUT0": np.zeros((1, 8), np.int32), "INPUT1": np.zeros((1, 8), np.int32)},
         "unexpected shape for input 'INPUT0'"),
        ({"INPUT0": np.zeros((9, 16), np.int32), "INPUT1": np.zeros((9, 16), np.int32)},
         "batch-size must be <= 8"),
        ({"INPUT0": np.zeros((1, 16), np.float32), "INPUT1": np.zeros((1, 16), np.int32)},
         "data-type is 'FP32', but model 'add' expects 'INT32'"),
    ],
)
def test_bad_requests_then_serves(repo, inputs, message):
    with make_server(repo) as s:
        req = InferenceRequest("add", inputs={k: Tensor.from_numpy(k, v) for k, v in inputs.items()})
        with pytest.raises(TritonError) as e:
            s.infer(req)
        assert e.value.code is ErrorCode.INVALID_ARG
        assert message in e.value.message
        a, b = _add_inputs()
        assert s.model("add").infer({"INPUT0": a, "INPUT1": b})["OUTPUT0"].shape == (1, 16)


def test_unknown_model_and_version(repo):
    with make_server(repo) as s:
        with pytest.raises(TritonError) as e:
            s.model("nope")
        assert e.value.code is ErrorCode.NOT_FOUND
        with pytest.raises(TritonError) as e:
            s.model_metadata("add", "7")
        assert e.value.code is ErrorCode.NOT_FOUND
        with pytest.raises(TritonError) as e:
            s.model_metadata("add", "x")
        assert e.value.code is ErrorCode.INVALID_ARG


def test_invalid_config_fails_alone(repo):
    write_model(repo, "broken", 'backend: "expr" max_batch_size: -3')
    write_model(repo, "corrupt", ADD_SUB, content="corrupt")
    s = make_server(repo, exit_on_error=False)
    s.start()
    try:
        idx = {r["name"]: r for r in s.repository_index()}
        assert idx["add"]["state"] == "READY"
        assert idx["broken"]["state"] == "UNAVAILABLE"
        assert "max_batch_size" in idx["broken"]["reason"] and "config.pbtxt" in idx["broken"]["reason"]
        assert "corrupt model file" in idx["corrupt"]["reason"]
        assert not s.is_ready()  # strict readiness
        assert s.model_ready("add")
    finally:
        s.stop()


def test_exit_on_error(repo):
    write_model(repo, "broken", 'backend: "expr" max_batch_size: -3')
    s = make_server(repo)
    with pytest.raises(TritonError, match="failed to load all models"):
        s.start()


def test_version_policies(tmp_path):
    write_model(tmp_path, "latest2", ADD_SUB + "version_policy { latest { num_versions: 2 } }",
                versions=(1, 2, 3))
    write_model(tmp_path, "all", ADD_SUB + "version_policy { all {} }", versions=(1, 2))
    write_model(tmp_path, "spec", ADD_SUB + "version_policy { specific { versions: [1, 9] } }",
                versions=(1, 2))
    # ignored version folders: leading zero, non numeric
    (tmp_path / "all" / "03").mkdir()
    (tmp_path / "all" / "abc").mkdir()
    with make_server(tmp_path) as s:
        ready = {(r["name"], r["version"]) for r in s.repository_index(ready_only=True)}
        assert ready == {("latest2", "2"), ("latest2", "3"), ("all", "1"), ("all", "2"), ("spec", "1")}
        assert s.model_metadata("latest2")["versions"] == ["2", "3"]
        a, b = _add_inputs()
        s.model("latest2", 2).infer({"INPUT0": a, "INPUT1": b})


def test_explicit_mode_load_unload_reload(repo):
    s = make_server(repo, model_control_mode="explicit", load_model=["add"])
    with s:
        assert s.model_ready("add") and not s.model_ready("strings")
        s.load_model("strings")
        assert s.model_ready("strings")
        s.unload_model("strings")
        assert not s.model_ready("strings")
        idx = {r["name"]: r for r in s.repository_index()}
        assert idx["strings"]["state"] == "UNAVAILABLE" and idx["strings"]["reason"] == "unloaded"
        # a new version folder takes effect on reload
        (repo / "add" / "2").mkdir()
        (repo / "add" / "2" / "model.expr").write_text("ok")
        s.load_model("add")
        assert s.model_metadata("add")["versions"] == ["2"]
        # a failed reload keeps the old version serving
        (repo / "add" / "config.pbtxt").write_text('backend: "expr" max_batch_size: -1')
        with pytest.raises(TritonError):
            s.load_model("add")
        assert s.model_ready("add", 2)


def test_none_mode_refuses_load_api(repo):
    with make_server(repo) as s:
        with pytest.raises(TritonError) as e:
            s.load_model("add")
        assert e.value.code is ErrorCode.UNAVAILABLE


def test_load_with_config_override_and_files(repo):
    s = make_server(repo, model_control_mode="explicit")
    with s:
        cfg = {"backend": "expr", "max_batch_size": 0,
               "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [2]}],
               "output": [{"name": "B", "data_type": "TYPE_FP32", "dims": [2]}],
               "parameters": {"B": {"string_value": "A * 3"}}}
        files = {"1/model.expr": base64.b64encode(b"ok").decode()}
        s.load_model("fresh", json.dumps(cfg), files)
        out = s.model("fresh").infer({"A": np.array([1, 2], np.float32)})
        np.testing.assert_array_equal(out["B"], [3, 6])
        for bad in ("../evil", "/etc/evil", "1/../../evil", "a\\..\\b"):
            with pytest.raises(TritonError) as e:
                s.load_model("fresh2", json.dumps(cfg), {bad: "b2s="})
            assert e.value.code is ErrorCode.INVALID_ARG
        assert not (repo.parent / "evil").exists()
        with pytest.raises(TritonError, match="need a 'config'"):
            s.load_model("fresh3", None, files)


def test_poll_mode_picks_up_changes(repo):
    s = make_server(repo, model_control_mode="poll", repository_poll_secs=3600)
    with s:
        assert s.model_ready("add")
        write_model(repo, "late", ADD_SUB)
        s.manager.poll_once()
        assert s.model_ready("late")
        (repo / "add" / "2").mkdir()
        (repo / "add" / "2" / "model.expr").write_text("ok")
        s.manager.poll_once()
        assert s.model_metadata("add")["versions"] == ["2"]
        import shutil
        shutil.rmtree(repo / "late")
        s.manager.poll_once()
        assert not s.model_ready("late")


def test_instances_run_in_parallel_never_concurrently(tmp_path):
    write_model(tmp_path, "slow", ADD_SUB + """
instance_group [{ count: 3 kind: KIND_CPU }]
parameters { key: "rendezvous" value { string_value: "3" } }
""")
    with make_server(tmp_path) as s:
        a, b = _add_inputs()
        # each execute waits for two others: done only if the three instances run together
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda _: s.model("slow").infer({"INPUT0": a, "INPUT1": b}), range(6)))
        lv = s.manager.get("slow")
        insts = lv.instances
        assert len(insts) == 3
        assert all(i.max_active == 1 for i in insts)
        assert [len(i.calls) for i in insts] == [2, 2, 2]
        st = s.statistics("slow")["model_stats"][0]
        assert st["inference_count"] == 6 and st["execution_count"] == 6
        assert st["inference_stats"]["success"]["count"] == 6


def test_dynamic_batching_matches_unbatched(tmp_path):
    write_model(tmp_path, "batched", ADD_SUB + """
dynamic_batching { max_queue_delay_microseconds: 20000 }
parameters { key: "sleep_ms" value { string_value: "5" } }
""")
    with make_server(tmp_path) as s:
        rng = np.random.default_rng(0)
        reqs = [(rng.integers(-50, 50, (n, 16), dtype=np.int32),
                 rng.integers(-50, 50, (n, 16), dtype=np.int32)) for n in (1, 2, 3, 1, 1)]
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            outs = list(pool.map(
                lambda ab: s.model("batched").infer({"INPUT0": ab[0], "INPUT1": ab[1]}), reqs))
        for (a, b), out in zip(reqs, outs, strict=True):
            np.testing.assert_array_equal(out["OUTPUT0"], a + b)
            np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        st = s.statistics("batched")["model_stats"][0]
        assert st["inference_count"] == 8
        assert st["execution_count"] < 5  # some requests were batched


def test_execute_exception_fails_only_that_request(tmp_path):
    write_model(tmp_path, "flaky", ADD_SUB + 'parameters { key: "fail_on" value { string_value: "-7" } }')
    with make_server(tmp_path) as s:
        a, b = _add_inputs()
        with pytest.raises(TritonError) as e:
            s.model("flaky").infer({"INPUT0": a * 0 - 7, "INPUT1": b})
        assert e.value.code is ErrorCode.INTERNAL and "failing value" in e.value.message
        s.model("flaky").infer({"INPUT0": a, "INPUT1": b})
        st = s.statistics("flaky")["model_stats"][0]["inference_stats"]
        assert st["fail"]["count"] == 1 and st["success"]["count"] == 1


def test_unload_waits_for_in_flight(tmp_path):
    write_model(tmp_path, "slow", ADD_SUB + 'parameters { key: "sleep_ms" value { string_value: "200" } }')
    s = make_server(tmp_path, model_control_mode="explicit", load_model=["*"])
    with s:
        a, b = _add_inputs()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(s.model("slow").infer, {"INPUT0": a, "INPUT1": b})
            lv = s.manager.get("slow")
            wait_until(lambda: int(lv.inflight) == 1, "the request in flight")
            s.unload_model("slow")
            np.testing.assert_array_equal(fut.result()["OUTPUT0"], a + b)
        assert not s.model_ready("slow")


def test_reserved_parameters_refused(repo):
    with make_server(repo) as s:
        a, b = _add_inputs()
        with pytest.raises(TritonError, match="reserved"):
            s.model("add").infer({"INPUT0": a, "INPUT1": b}, parameters={"triton_x": 1})


def test_decoupled_model_streams_responses(tmp_path):
    from expr_backend import REPEAT_DECOUPLED

    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    with make_server(tmp_path) as s:
        x = np.array([1, 2], np.int32)
        req = InferenceRequest("repeat", inputs={"IN": Tensor.from_numpy("IN", x)})
        got = list(s.infer_iter(req, timeout=10))
        assert [final for _, final in got] == [False, False, False, True]
        assert got[-1][0] is None
        for i, (resp, _) in enumerate(got[:3]):
            np.testing.assert_array_equal(resp.output("OUT").as_numpy(), x * i)
        with pytest.raises(TritonError) as e:
            s.model("repeat").infer({"IN": x})
        assert e.value.code is ErrorCode.UNSUPPORTED
        # decoupled statistics are recorded when execute returns, which may follow the FINAL
        wait_until(lambda: s.statistics("repeat")["model_stats"][0]["inference_stats"]["success"]
                   ["count"] == 1, "the decoupled execution recorded", 5)


WARMUP = """
model_warmup [{ name: "zeros" batch_size: 2 count: 3
  inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [16] zero_data: true } }
  inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [16] random_data: true } } }]
instance_group [{ count: 2 kind: KIND_CPU }]
"""


def test_model_warmup_runs_on_every_instance(tmp_path):
    write_model(tmp_path, "warm", ADD_SUB + WARMUP)
    with make_server(tmp_path) as s:
        lv = s.manager.get("warm")
        assert [inst.calls for inst in lv.instances] == [[1, 1, 1], [1, 1, 1]]
        assert s.statistics("warm")["model_stats"][0]["inference_count"] == 0  # warmup is not counted


def test_failing_warmup_fails_the_load(tmp_path):
    write_model(tmp_path, "cold", ADD_SUB + WARMUP
                + 'parameters { key: "fail_on" value { string_value: "0" } }')
    write_model(tmp_path, "add", ADD_SUB)
    s = make_server(tmp_path, exit_on_error=False)
    with s:
        idx = {r["name"]: r for r in s.repository_index()}
        assert idx["cold"]["state"] == "UNAVAILABLE"
        assert "warmup sample 'zeros' failed" in idx["cold"]["reason"]
        assert idx["add"]["state"] == "READY"


BLOCK7 = ADD_SUB + 'parameters { key: "block_value" value { string_value: "7" } }'


def test_stop_marks_every_model_not_ready_at_once_and_shares_one_deadline(tmp_path):
    """Shutdown unloads every model under one deadline: a model whose request hangs must
    not keep the others READY (nor add its own exit timeout to theirs)."""
    import threading

    import expr_backend

    write_model(tmp_path, "a_hung", BLOCK7)
    write_model(tmp_path, "b_idle", ADD_SUB)
    s = make_server(tmp_path)
    s.start()
    a, b = _add_inputs()
    expr_backend.GATE.clear()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(s.model("a_hung").infer, {"INPUT0": a * 0 + 7, "INPUT1": b})
            inst = s.manager.get("a_hung").instances[0]
            wait_until(lambda: inst.blocked == 1, "the request reached the model")
            stopper = threading.Thread(target=s.stop)
            stopper.start()
            wait_until(lambda: not s.manager.is_ready("b_idle") and not s.manager.is_ready("a_hung"),
                       "both models not ready while the hung request is in flight")
            assert fut.running()  # still in flight: the unload waits for it
            expr_backend.GATE.set()
            assert fut.result(30)["OUTPUT0"].tolist() == (a * 0 + 7 + b).tolist()
            stopper.join(30)
    finally:
        expr_backend.GATE.set()
    assert not stopper.is_alive()


def test_infer_timeout_cancels_the_request_and_raises_a_triton_error(tmp_path):
    """Server.infer(timeout) behaves as infer_iter: UNAVAILABLE, and the request is
    cancelled (a queued one never runs)."""
    import threading

    import expr_backend

    blocking = ADD_SUB.replace("max_batch_size: 8", "max_batch_size: 0") \
        .replace("dims: [16]", "dims: [1, 16]") \
        + 'parameters { key: "block_value" value { string_value: "-7" } }\n'
    write_model(tmp_path, "add", blocking)

    def req(v):
        x = np.full((1, 16), v, np.int32)
        return InferenceRequest(model_name="add", inputs={
            "INPUT0": Tensor.from_numpy("INPUT0", x), "INPUT1": Tensor.from_numpy("INPUT1", x)})

    with make_server(tmp_path) as s:
        inst = s.manager.get("add").instances[0]
        expr_backend.GATE.clear()
        try:
            held = threading.Thread(target=lambda: s.infer(req(-7), timeout=30))
            held.start()
            wait_until(lambda: inst.blocked == 1, "the instance busy")
            queued = req(1)
            with pytest.raises(TritonError) as e:
                s.infer(queued, timeout=0.01)
            assert e.value.code is ErrorCode.UNAVAILABLE and "timed out" in e.value.message
            assert queued.cancelled
        finally:
            expr_backend.GATE.set()
        held.join(10)
        wait_until(lambda: s.manager.get("add").stats.pending == 0, "nothing in flight")
        assert inst.order[-1].inputs["INPUT0"].as_numpy()[0, 0] == -7  # the cancelled never ran


def test_in_process_infer_refuses_values_its_datatype_cannot_hold(repo):
    """server.model(...).infer converts as the HTTP front end does: no silent rounding."""
    with make_server(repo) as s:
        with pytest.raises(TritonError) as e:
            s.model("add").infer({"INPUT0": np.full((1, 16), 1.5), "INPUT1": np.ones((1, 16), np.int32)})
        assert e.value.code is ErrorCode.INVALID_ARG and "INPUT0" in e.value.message
        out = s.model("add").infer({"INPUT0": np.full((1, 16), 2), "INPUT1": [[1] * 16]})  # int64, lists
        assert out["OUTPUT0"].dtype == np.int32 and out["OUTPUT0"].tolist() == [[3] * 16]
