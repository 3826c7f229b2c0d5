"""The trace extension (triton mode): settings, sampling, the JSON trace file, and the
settings API through tritonclient (HTTP and gRPC)."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import ErrorCode, TritonError
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.scheduling.trace import TraceManager, TraceSetting, parse_trace_flags
from triton_core.testing import LoopThread, serving_http

ORDER = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
         "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]
A = np.arange(16, dtype=np.int32).reshape(1, 16)


def _traced_server(tmp_path, *flags: str):
    write_model(tmp_path / "repo", "add", ADD_SUB)
    return make_server(tmp_path / "repo", trace_config=list(flags))


def _read(path) -> dict[int, dict]:
    """Trace id -> {"head": ..., "timestamps": [(name, ns)]}."""
    out: dict[int, dict] = {}
    for rec in json.loads(path.read_text()):
        t = out.setdefault(rec["id"], {"timestamps": []})
        if "timestamps" in rec:
            t["timestamps"].extend((s["name"], s["ns"]) for s in rec["timestamps"])
        else:
            t["head"] = rec
    return out


def test_every_request_traced_with_tritons_timestamps_in_order(tmp_path):
    trace_file = tmp_path / "trace.json"
    with _traced_server(tmp_path, "level=TIMESTAMPS", "rate=1", f"triton,file={trace_file}") as s:
        for _ in range(3):
            s.model("add").infer({"INPUT0": A, "INPUT1": A})
    traces = _read(trace_file)
    assert len(traces) == 3
    for t in traces.values():
        assert t["head"]["model_name"] == "add" and t["head"]["model_version"] == 1
        names = [n for n, _ in t["timestamps"]]
        assert names == ORDER
        stamps = [ns for _, ns in t["timestamps"]]
        assert stamps == sorted(stamps)


def test_rate_count_and_log_frequency(tmp_path):
    trace_file = tmp_path / "t.json"
    with _traced_server(tmp_path, "level=TIMESTAMPS", "rate=2", "count=2",
                        f"triton,file={trace_file}", "triton,log-frequency=1") as s:
        for _ in range(8):
            s.model("add").infer({"INPUT0": A, "INPUT1": A})
        assert s.trace_setting()["trace_count"] == "0"  # used up: no more traces
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.json"))
    assert files == ["t.json.0", "t.json.1"]  # one trace a file (log_frequency 1)
    assert all(len(_read(tmp_path / f)) == 1 for f in files)


def test_off_traces_nothing(tmp_path):
    trace_file = tmp_path / "trace.json"
    with _traced_server(tmp_path, f"triton,file={trace_file}") as s:
        s.model("add").infer({"INPUT0": A, "INPUT1": A})
        assert s.trace_setting()["trace_level"] == ["OFF"]
    assert not trace_file.exists()


def test_model_settings_override_the_global_ones_and_null_clears_them():
    m = TraceManager(TraceSetting(trace_rate=10))
    assert m.update("a", {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}).trace_rate == 1
    assert m.setting("a").trace_level == ("TIMESTAMPS",) and m.setting("b").trace_rate == 10
    m.update(None, {"trace_count": "5"})
    assert m.setting("a").trace_count == 5  # follows the global key it does not set
    m.update("a", {"trace_rate": None})
    assert m.setting("a").trace_rate == 10


@pytest.mark.parametrize("changes, words", [
    ({"trace_rate": "0"}, "Invalid 'trace_rate' value: 0"),
    ({"trace_rate": "x"}, "Unable to parse 'trace_rate'"),
    ({"trace_level": ["LOUD"]}, "Unable to parse 'trace_level'"),
    ({"trace_count": "-2"}, "Invalid 'trace_count' value"),
    ({"nope": "1"}, "Unknown trace setting 'nope'"),
])
def test_bad_settings_are_refused(changes, words):
    with pytest.raises(TritonError) as e:
        TraceManager().update(None, changes)
    assert e.value.code is ErrorCode.INVALID_ARG and words in e.value.message


@pytest.mark.parametrize("flags", [
    ["rate"], ["nope=1"], ["mode=zipkin"], ["jaeger,url=x"], ["triton,rate=5"],
    ["mode=opentelemetry", "level=TENSORS"],
])
def test_bad_flags_are_refused(flags):
    with pytest.raises(TritonError) as e:
        parse_trace_flags(flags)
    assert e.value.code is ErrorCode.INVALID_ARG


def test_flags_are_read_as_triton_reads_them():
    cfg = parse_trace_flags(["level=TIMESTAMPS", "level=TENSORS", "rate=5", "count=3",
                             "triton,file=/tmp/t.json", "triton,log-frequency=2"])
    assert cfg.mode == "triton" and cfg.setting == TraceSetting(
        trace_file="/tmp/t.json", trace_level=("TIMESTAMPS", "TENSORS"), trace_rate=5,
        trace_count=3, log_frequency=2)
    cfg = parse_trace_flags(["mode=opentelemetry", "opentelemetry,url=http://c:4318/v1/traces",
                             "opentelemetry,resource=a=1", "opentelemetry,resource=b=2"])
    assert cfg.mode == "opentelemetry"
    assert cfg.opentelemetry == {"url": ["http://c:4318/v1/traces"], "resource": ["a=1", "b=2"]}


def test_settings_api_over_http_and_grpc(tmp_path):
    trace_file = tmp_path / "api.json"
    with _traced_server(tmp_path) as s, serving_http(s) as addr:
        http = httpclient.InferenceServerClient(addr)
        got = http.get_trace_settings()
        assert got == {"trace_file": "", "trace_level": ["OFF"], "trace_rate": "1000",
                       "trace_count": "-1", "log_frequency": "0", "trace_mode": "triton"}
        got = http.update_trace_settings(model_name="add", settings={
            "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_file": str(trace_file)})
        assert got["trace_level"] == ["TIMESTAMPS"] and got["trace_rate"] == "1"
        assert http.get_trace_settings()["trace_level"] == ["OFF"]  # global unchanged
        with pytest.raises(InferenceServerException) as e:
            http.update_trace_settings(settings={"trace_rate": "0"})
        assert "trace_rate" in str(e.value)
        with pytest.raises(InferenceServerException):
            http.get_trace_settings(model_name="missing")
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                  httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        for i in inputs:
            i.set_data_from_numpy(A)
        http.infer("add", inputs)
        http.close()
        with LoopThread() as loop:
            front = GrpcFrontEnd(s, "127.0.0.1", 0)
            loop.run(front.start())
            try:
                grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
                got = grpc.get_trace_settings(model_name="add", as_json=True)["settings"]
                assert got["trace_level"]["value"] == ["TIMESTAMPS"]
                got = grpc.update_trace_settings(settings={"trace_count": "7"}, as_json=True)
                assert got["settings"]["trace_count"]["value"] == ["7"]
                grpc.close()
            finally:
                loop.run(front.stop(0))
    assert len(_read(trace_file)) == 1  # the model's own setting traced its request


def test_an_ensembles_steps_are_traced_as_its_children(tmp_path):
    from test_sequence_ensemble_cache import DAG_IN, DAG_OUT, DAG_STEPS, SCALE, ens_cfg

    repo = tmp_path / "repo"
    write_model(repo, "add", ADD_SUB)
    write_model(repo, "scale", SCALE)
    write_model(repo, "a_ens", ens_cfg(DAG_STEPS, DAG_IN, DAG_OUT))
    trace_file = tmp_path / "ens.json"
    one = np.ones((1, 16), np.int32)
    with make_server(repo, trace_config=["level=TIMESTAMPS", "rate=1",
                                         f"triton,file={trace_file}"]) as s:
        s.model("a_ens").infer({"IN0": one, "IN1": one})
    traces = _read(trace_file)
    root = [t for t in traces.values() if t["head"]["model_name"] == "a_ens"]
    assert len(root) == 1
    root_id = root[0]["head"]["id"]
    steps = [t for t in traces.values() if t["head"].get("parent_id") == root_id]
    assert steps and {t["head"]["model_name"] for t in steps} <= {"add", "scale"}
    assert len(steps) == len(traces) - 1  # every other trace is one of its steps
    for t in steps:
        assert [n for n, _ in t["timestamps"]] == ORDER
    assert [n for n, _ in root[0]["timestamps"]] == ["REQUEST_START", "REQUEST_END"]


def test_level_tensors_writes_inputs_and_outputs(tmp_path):
    trace_file = tmp_path / "tensors.json"
    with _traced_server(tmp_path, "level=TENSORS", "rate=1", f"triton,file={trace_file}") as s:
        s.model("add").infer({"INPUT0": A, "INPUT1": A})
    records = json.loads(trace_file.read_text())
    tensors = {(r["activity"], r["tensor"]["name"]): r["tensor"] for r in records if "activity" in r}
    inp = tensors[("TENSOR_QUEUE_INPUT", "INPUT0")]
    assert inp == {"name": "INPUT0", "data": ",".join(str(v) for v in range(16)), "shape": "1,16",
                   "dtype": "INT32"}
    out = tensors[("TENSOR_BACKEND_OUTPUT", "OUTPUT0")]
    assert out["data"] == ",".join(str(2 * v) for v in range(16))
    assert not [r for r in records if "timestamps" in r]  # TENSORS alone: no timestamps
