# ruff: noqa: E501  (model configs read best on one line each)
"""Sequence batcher, ensembles, response cache and the HTTP generate extension."""

import concurrent.futures
import json
import urllib.request

import numpy as np
import pytest

from expr_backend import ADD_SUB, REPEAT_DECOUPLED, make_server, write_model
from live_server import serving_http
from triton_core import ErrorCode, InferenceRequest, Tensor, TritonError
from triton_core.scheduling.clock import ManualClock
from waiting import wait_until

START, END = 1, 2

ACCUMULATOR = """
backend: "expr"
max_batch_size: {mbs}
input [{{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }}]
output [{{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }},
        {{ name: "CTRL" data_type: TYPE_FP32 dims: [ 4 ] }},
        {{ name: "INST" data_type: TYPE_INT32 dims: [ 1 ] }}]
instance_group [{{ kind: KIND_CPU count: {count} }}]
sequence_batching {{
  {strategy}
  max_sequence_idle_microseconds: {idle}
  control_input [
    {{ name: "START" control [{{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }}] }},
    {{ name: "END" control [{{ kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] }}] }},
    {{ name: "READY" control [{{ kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] }}] }},
    {{ name: "CORRID" control [{{ kind: CONTROL_SEQUENCE_CORRID data_type: {corrid_type} }}] }}
  ]
  state [{{ input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_INT32 dims: [ 1 ]
            initial_state {{ data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" }} }}]
}}
parameters {{ key: "OUTPUT" value {{ string_value: "ACC_IN + INPUT" }} }}
parameters {{ key: "ACC_OUT" value {{ string_value: "ACC_IN + INPUT" }} }}
parameters {{ key: "CTRL" value {{ string_value: "{ctrl}" }} }}
parameters {{ key: "INST" value {{ string_value: "np.full(INPUT.shape, instance)" }} }}
"""


def acc_cfg(mbs=0, count=1, strategy="", idle=5000000, corrid_type="TYPE_UINT64"):
    if corrid_type == "TYPE_STRING":
        cid = "np.full(START.shape, len(CORRID.reshape(-1)[0]))"
    else:
        cid = "CORRID"
    ctrl = f"np.concatenate([START, END, READY, {cid}], axis=-1).astype(np.float32)"
    return ACCUMULATOR.format(mbs=mbs, count=count, strategy=strategy, idle=idle,
                              corrid_type=corrid_type, ctrl=ctrl)


def seq_req(v, corrid, flags=0, mbs=0, name="acc"):
    shape = (1, 1) if mbs else (1,)
    return InferenceRequest(model_name=name, inputs={"INPUT": Tensor.from_numpy(
        "INPUT", np.full(shape, v, np.int32))}, correlation_id=corrid, flags=flags)


def val(resp, name="OUTPUT"):
    return resp.output(name).as_numpy().reshape(-1).tolist()


@pytest.mark.parametrize("mbs,strategy", [(0, ""), (4, "direct { }"),
                                          (4, "oldest { max_candidate_sequences: 4 }")])
def test_sequence_state_controls_and_interleaving(tmp_path, mbs, strategy):
    write_model(tmp_path, "acc", acc_cfg(mbs=mbs, strategy=strategy, count=2))
    with make_server(tmp_path) as s:
        r = s.infer(seq_req(1, 11, START, mbs))
        assert val(r) == [1]
        assert val(r, "CTRL") == [1, 0, 1, 11]
        assert [t.name for t in r.outputs] == ["OUTPUT", "CTRL", "INST"]  # no state output
        assert val(s.infer(seq_req(5, 22, START, mbs))) == [5]
        assert val(s.infer(seq_req(2, 11, 0, mbs))) == [3]
        assert val(s.infer(seq_req(1, 22, 0, mbs))) == [6]
        r = s.infer(seq_req(3, 11, END, mbs))
        assert val(r) == [6] and val(r, "CTRL") == [0, 1, 1, 11]
        # after END the sequence is gone; a new START begins from the initial state
        with pytest.raises(TritonError, match="must specify the START flag"):
            s.infer(seq_req(1, 11, 0, mbs))
        assert val(s.infer(seq_req(4, 11, START | END, mbs))) == [4]


def test_sequence_errors_and_string_ids(tmp_path):
    write_model(tmp_path, "acc", acc_cfg(corrid_type="TYPE_STRING"))
    with make_server(tmp_path) as s:
        with pytest.raises(TritonError) as e:
            s.infer(seq_req(1, 0, START))
        assert e.value.code is ErrorCode.INVALID_ARG
        assert "must specify a non-zero or non-empty correlation ID" in e.value.message
        with pytest.raises(TritonError, match="sequence abc to model 'acc' must specify the START"):
            s.infer(seq_req(1, "abc", 0))
        assert val(s.infer(seq_req(1, "abc", START))) == [1]
        r = s.infer(seq_req(2, "abc", END))
        assert val(r) == [3] and val(r, "CTRL")[3] == 3  # CORRID as a string of 3 bytes


def test_sequence_idle_release(tmp_path):
    write_model(tmp_path, "acc", acc_cfg(idle=100000))
    clock = ManualClock()
    with make_server(tmp_path, clock=clock) as s:
        s.infer(seq_req(1, 7, START))
        scheduler = s.manager.get("acc").queue
        clock.advance(0.4)  # past the 100 ms idle time: the scheduler lets the sequence go
        wait_until(lambda: 7 not in scheduler.seqs, "the idle sequence released")
        with pytest.raises(TritonError, match="must specify the START flag"):
            s.infer(seq_req(1, 7, 0))


@pytest.mark.parametrize("strategy", ["direct { }", "oldest { max_candidate_sequences: 8 "
                                                   "max_queue_delay_microseconds: 2000 }"])
def test_sequences_stick_to_their_instance(tmp_path, strategy):
    write_model(tmp_path, "acc", acc_cfg(mbs=2, count=3, strategy=strategy))
    with make_server(tmp_path) as s, concurrent.futures.ThreadPoolExecutor(8) as pool:
        def run(cid):
            insts, outs = set(), []
            for i in range(6):
                flags = START if i == 0 else (END if i == 5 else 0)
                r = s.infer(seq_req(1, cid, flags, 2))
                insts.add(val(r, "INST")[0])
                outs.append(val(r)[0])
            return insts, outs
        results = list(pool.map(run, range(1, 9)))
        for insts, outs in results:
            assert len(insts) == 1
            assert outs == [1, 2, 3, 4, 5, 6]
        used = {next(iter(i)) for i, _ in results}
        assert len(used) > 1  # sequences spread over instances


# ensembles -------------------------------------------------------------------------------

def ens_cfg(steps, inputs, outputs, name="ens"):
    return f"""
platform: "ensemble"
max_batch_size: 8
input [{inputs}]
output [{outputs}]
ensemble_scheduling {{ step [ {steps} ] }}
"""


SCALE = """
backend: "expr"
max_batch_size: 8
input [{ name: "A" data_type: TYPE_INT32 dims: [16] }]
output [{ name: "B" data_type: TYPE_INT32 dims: [16] }]
parameters { key: "B" value { string_value: "A * 10" } }
parameters { key: "fail_on" value { string_value: "-1" } }
"""

DAG_STEPS = """
{ model_name: "scale" model_version: -1 input_map { key: "A" value: "IN0" } output_map { key: "B" value: "S0" } },
{ model_name: "scale" model_version: -1 input_map { key: "A" value: "IN1" } output_map { key: "B" value: "S1" } },
{ model_name: "add" model_version: 1 input_map [{ key: "INPUT0" value: "S0" }, { key: "INPUT1" value: "S1" }]
  output_map [{ key: "OUTPUT0" value: "SUM" }, { key: "OUTPUT1" value: "DIFF" }] }
"""
DAG_IN = '{ name: "IN0" data_type: TYPE_INT32 dims: [16] }, { name: "IN1" data_type: TYPE_INT32 dims: [16] }'
DAG_OUT = '{ name: "SUM" data_type: TYPE_INT32 dims: [16] }, { name: "DIFF" data_type: TYPE_INT32 dims: [16] }'


@pytest.fixture
def ens_repo(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    write_model(tmp_path, "scale", SCALE)
    write_model(tmp_path, "a_ens", ens_cfg(DAG_STEPS, DAG_IN, DAG_OUT))  # sorts before its parts
    return tmp_path


def test_ensemble_dag_results_stats_metadata(ens_repo):
    with make_server(ens_repo) as s:
        a = np.arange(32, dtype=np.int32).reshape(2, 16)
        b = np.ones((2, 16), np.int32)
        out = s.model("a_ens").infer({"IN0": a, "IN1": b})
        np.testing.assert_array_equal(out["SUM"], a * 10 + b * 10)
        np.testing.assert_array_equal(out["DIFF"], a * 10 - b * 10)
        md = s.model_metadata("a_ens")
        assert md["platform"] == "ensemble" and md["inputs"][0]["shape"] == [-1, 16]
        cfg = s.model_config_json("a_ens")
        assert cfg["platform"] == "ensemble" and len(cfg["ensemble_scheduling"]["step"]) == 3
        stats = {m["name"]: m for m in s.statistics()["model_stats"]}
        assert stats["a_ens"]["inference_stats"]["success"]["count"] == 1
        assert stats["scale"]["inference_stats"]["success"]["count"] == 2
        assert stats["add"]["inference_stats"]["success"]["count"] == 1
        only = s.model("a_ens").infer({"IN0": a, "IN1": b}, outputs=["DIFF"])
        assert list(only) == ["DIFF"]


def test_ensemble_step_error_ends_request(ens_repo):
    with make_server(ens_repo) as s:
        a = np.full((1, 16), -1, np.int32)
        with pytest.raises(TritonError, match="failing value -1"):
            s.model("a_ens").infer({"IN0": a, "IN1": np.ones((1, 16), np.int32)})
        st = {m["name"]: m for m in s.statistics()["model_stats"]}
        assert st["a_ens"]["inference_stats"]["fail"]["count"] == 1


def test_ensemble_missing_model_and_unload_dependents(ens_repo, tmp_path_factory):
    with make_server(ens_repo, model_control_mode="explicit", load_model=["a_ens"],
                     exit_on_error=False) as s:
        idx = {r["name"]: r for r in s.repository_index()}
        assert idx["a_ens"]["state"] == "UNAVAILABLE"
        assert "composing model 'scale' is not available" in idx["a_ens"]["reason"]
        s.load_model("scale")
        s.load_model("add")
        s.load_model("a_ens")
        assert s.model_ready("a_ens")
        s.unload_model("scale", unload_dependents=False)
        assert s.model_ready("a_ens") is False  # loaded, but its step cannot run
        s.load_model("scale")
        s.unload_model("scale", unload_dependents=True)
        idx = {r["name"]: r for r in s.repository_index()}
        assert idx["a_ens"]["state"] == "UNAVAILABLE" and idx["add"]["state"] == "READY"


def test_ensemble_bad_dag_refused(tmp_path):
    write_model(tmp_path, "scale", SCALE)
    steps = '{ model_name: "scale" input_map { key: "A" value: "NOPE" } output_map { key: "B" value: "OUT" } }'
    write_model(tmp_path, "ens", ens_cfg(steps, '{ name: "IN" data_type: TYPE_INT32 dims: [16] }',
                                         '{ name: "OUT" data_type: TYPE_INT32 dims: [16] }'))
    with make_server(tmp_path, exit_on_error=False) as s:
        assert "consumes tensor 'NOPE'" in s.load_errors["ens"]


# response cache ----------------------------------------------------------------------------

CACHED = ADD_SUB + "response_cache { enable: true }\n"


def test_response_cache_hits_misses_lru_and_metrics(tmp_path):
    write_model(tmp_path, "add", CACHED)
    with make_server(tmp_path, cache_config={"local": {"size": "300"}}) as s:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        m = s.model("add")
        inst = s.manager.get("add").instances[0]
        o1 = m.infer({"INPUT0": a, "INPUT1": a})
        o2 = m.infer({"INPUT0": a, "INPUT1": a})
        np.testing.assert_array_equal(o1["OUTPUT0"], o2["OUTPUT0"])
        assert len(inst.calls) == 1
        st = s.statistics("add")["model_stats"][0]
        assert st["inference_stats"]["cache_hit"]["count"] == 1
        assert st["inference_stats"]["cache_miss"]["count"] == 1
        assert st["inference_stats"]["success"]["count"] == 2
        assert st["inference_count"] == 1  # cached requests are not executions
        # requested outputs are part of the key
        m.infer({"INPUT0": a, "INPUT1": a}, outputs=["OUTPUT1"])
        assert len(inst.calls) == 2
        # size 300 holds two entries of 128 bytes + overhead at most: the oldest goes
        m.infer({"INPUT0": a + 1, "INPUT1": a})
        m.infer({"INPUT0": a, "INPUT1": a})
        assert len(inst.calls) == 4
        from triton_core.frontends.metrics import Metrics
        text = Metrics(s, cpu_metrics=False).render().decode()
        assert 'nv_cache_num_hits_per_model{model="add",version="1"} 1' in text
        assert 'nv_cache_num_misses_per_model{model="add",version="1"} 4' in text


def test_response_cache_refused_for_decoupled_and_off_without_cache(tmp_path):
    write_model(tmp_path, "dec", REPEAT_DECOUPLED + "response_cache { enable: true }\n")
    write_model(tmp_path, "add", CACHED)
    with make_server(tmp_path, exit_on_error=False) as s:
        assert "decoupled" in s.load_errors["dec"]
        a = np.zeros((1, 16), np.int32)
        s.model("add").infer({"INPUT0": a, "INPUT1": a})
        s.model("add").infer({"INPUT0": a, "INPUT1": a})
        assert len(s.manager.get("add").instances[0].calls) == 2  # no --cache-config: no cache


def test_cache_config_cli():
    from triton_core.cli import _cache_config
    assert _cache_config(["local,size=1048576"]) == {"local": {"size": "1048576"}}
    with pytest.raises(SystemExit):
        _cache_config(["redis,host=x"])


# generate extension ---------------------------------------------------------------------

GEN = """
backend: "expr"
max_batch_size: 0
input [{ name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },
       { name: "scale" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "text_output" data_type: TYPE_STRING dims: [ 1 ] },
        { name: "n" data_type: TYPE_INT32 dims: [ 1 ] }]
parameters { key: "text_output" value { string_value: "np.char.upper(text_input.astype(bytes)).astype(object)" } }
parameters { key: "n" value { string_value: "scale * 3" } }
"""


def _post(url, body):
    rq = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(rq, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_generate_and_generate_stream(tmp_path):
    write_model(tmp_path, "gen", GEN)
    write_model(tmp_path, "dec", REPEAT_DECOUPLED.replace("dims: [-1]", "dims: [1]"))
    with make_server(tmp_path) as s, serving_http(s) as addr:
        st, ct, body = _post(f"http://{addr}/v2/models/gen/generate",
                             {"text_input": "hello", "scale": 2, "parameters": {"x": 1}})
        assert st == 200, body
        assert json.loads(body) == {"model_name": "gen", "model_version": "1",
                                    "text_output": "HELLO", "n": 6}
        st, ct, body = _post(f"http://{addr}/v2/models/gen/generate_stream",
                             {"text_input": "ab", "scale": 1})
        assert st == 200 and ct.startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in body.decode().split("\n\n") if line]
        assert events == [{"model_name": "gen", "model_version": "1", "text_output": "AB", "n": 3}]
        st, ct, body = _post(f"http://{addr}/v2/models/dec/generate_stream", {"IN": 5})
        events = [json.loads(line[6:]) for line in body.decode().split("\n\n") if line]
        assert [e["OUT"] for e in events] == [0, 5, 10]
        st, _, body = _post(f"http://{addr}/v2/models/gen/generate", {"bogus": 1})
        assert st == 400 and b"unexpected inference input 'bogus'" in body
        st, _, body = _post(f"http://{addr}/v2/models/nope/generate", {"x": 1})
        assert st in (400, 404)


def test_initial_state_from_data_file(tmp_path):
    cfg = acc_cfg().replace('zero_data: true name: "zero"', 'data_file: "hundred.bin" name: "file"')
    d = write_model(tmp_path, "acc", cfg)
    (d / "initial_state").mkdir()
    (d / "initial_state" / "hundred.bin").write_bytes(np.array([100], "<i4").tobytes())
    with make_server(tmp_path) as s:
        assert val(s.infer(seq_req(1, 7, START))) == [101]
        assert val(s.infer(seq_req(2, 7))) == [103]


def test_initial_state_data_file_errors(tmp_path):
    cfg = acc_cfg().replace('zero_data: true name: "zero"', 'data_file: "../../x.bin" name: "f"')
    write_model(tmp_path, "bad", cfg)
    cfg2 = acc_cfg().replace('zero_data: true name: "zero"', 'data_file: "short.bin" name: "f"')
    d = write_model(tmp_path, "short", cfg2)
    (d / "initial_state").mkdir()
    (d / "initial_state" / "short.bin").write_bytes(b"\0\0")
    s = make_server(tmp_path, exit_on_error=False)
    with s:
        idx = {r["name"]: r for r in s.repository_index()}
        assert "leaves its folder" in idx["bad"]["reason"]
        assert "has 2 bytes" in idx["short"]["reason"]
