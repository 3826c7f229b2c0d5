# ruff: noqa: E501  (model configs read best on one line each)
"""Ensembles with a decoupled step: one ensemble response per response of that step."""

import asyncio

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from expr_backend import REPEAT_DECOUPLED, make_server, write_model
from triton_core import ErrorCode, InferenceRequest, Tensor, TritonError
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.testing import LoopThread
from waiting import wait_until


def expr(inp: str, out: str, expression: str, extra: str = "") -> str:
    return f"""
backend: "expr"
max_batch_size: 0
input [{{ name: "{inp}" data_type: TYPE_INT32 dims: [-1] }}]
output [{{ name: "{out}" data_type: TYPE_INT32 dims: [-1] }}]
parameters {{ key: "{out}" value {{ string_value: "{expression}" }} }}
{extra}
"""


def ensemble(steps: str, outputs: str) -> str:
    return f"""
platform: "ensemble"
max_batch_size: 0
input [{{ name: "IN" data_type: TYPE_INT32 dims: [-1] }}]
output [{outputs}]
ensemble_scheduling {{ step [ {steps} ] }}
"""


def step(model: str, inp: str, src: str, out: str, dst: str) -> str:
    return (f'{{ model_name: "{model}" model_version: -1 input_map {{ key: "{inp}" value: "{src}" }} '
            f'output_map {{ key: "{out}" value: "{dst}" }} }}')


def out(name: str) -> str:
    return f'{{ name: "{name}" data_type: TYPE_INT32 dims: [-1] }}'


PIPELINE = ", ".join([step("pre", "A", "IN", "B", "SCALED"), step("repeat", "IN", "SCALED", "OUT", "TOK"),
                      step("post", "Y", "TOK", "Z", "RESULT")])


@pytest.fixture
def repo(tmp_path):
    write_model(tmp_path, "pre", expr("A", "B", "A * 10"))
    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    write_model(tmp_path, "post", expr("Y", "Z", "Y + 1"))
    write_model(tmp_path, "a_pipe", ensemble(PIPELINE, out("RESULT")))
    write_model(tmp_path, "a_pair", ensemble(PIPELINE, out("TOK") + ", " + out("RESULT")))
    return tmp_path


def req(model: str, x, **kw) -> InferenceRequest:
    return InferenceRequest(model_name=model, inputs={"IN": Tensor.from_numpy("IN", np.asarray(x, np.int32))},
                            **kw)


def collect(server, r: InferenceRequest) -> list:
    """Every (response, final) of a request; checks FINAL comes once, last."""
    got = list(server.infer_iter(r, timeout=20))
    assert [f for _, f in got] == [False] * (len(got) - 1) + [True]
    return got


def values(got, name="RESULT") -> list:
    return [resp.output(name).as_numpy().tolist() for resp, _ in got if resp is not None]


def test_each_response_of_the_decoupled_step_flows_downstream(repo):
    with make_server(repo) as s:
        got = collect(s, req("a_pipe", [1, 2], id="r1"))
        # repeat answers IN * i for i = 0, 1, 2; post adds one to each
        assert values(got) == [[1, 1], [11, 21], [21, 41]]
        for resp, _ in got:
            if resp is not None:
                assert (resp.model_name, resp.model_version, resp.id) == ("a_pipe", 1, "r1")
                assert [t.name for t in resp.outputs] == ["RESULT"]
        st = {m["name"]: m["inference_stats"] for m in s.statistics()["model_stats"]}
        assert st["a_pipe"]["success"]["count"] == 1  # one ensemble request, several responses
        assert st["pre"]["success"]["count"] == 1 and st["post"]["success"]["count"] == 3


def test_outputs_of_one_iteration_travel_together(repo):
    with make_server(repo) as s:
        got = collect(s, req("a_pair", [3]))
        pairs = sorted(zip(values(got, "TOK"), values(got, "RESULT"), strict=True))
        assert pairs == [([0], [1]), ([30], [31]), ([60], [61])]


def test_ensemble_is_decoupled_streaming_only(repo):
    with make_server(repo) as s:
        cfg = s.model_config_json("a_pipe")
        assert cfg["model_transaction_policy"]["decoupled"] is True
        with pytest.raises(TritonError) as e:
            s.infer(req("a_pipe", [1]))
        assert e.value.code is ErrorCode.UNSUPPORTED
        # an ensemble without a decoupled step is not decoupled, whatever its config says
        write_model(repo, "plain", ensemble(step("pre", "A", "IN", "B", "SCALED"), out("SCALED"))
                    + "model_transaction_policy { decoupled: true }\n")
        s.manager.load("plain")
        assert s.model_config_json("plain").get("model_transaction_policy", {}).get("decoupled", False) is False
        assert s.model("plain").infer({"IN": np.array([2], np.int32)})["SCALED"].tolist() == [20]


def test_zero_responses_give_a_bare_final(repo):
    write_model(repo, "repeat", REPEAT_DECOUPLED.replace('string_value: "3"', 'string_value: "0"'))
    with make_server(repo) as s:
        assert collect(s, req("a_pipe", [1])) == [(None, True)]


def test_a_failing_iteration_ends_the_stream_with_its_error(repo):
    # IN [1] -> pre [10] -> repeat [0], [10], [20] -> post fails on an input holding 10
    write_model(repo, "post", expr("Y", "Z", "Y + 1", 'parameters { key: "fail_on" value { string_value: "10" } }'))
    with make_server(repo) as s:
        got = collect(s, req("a_pipe", [1]))
        assert len(got) == 2 and values(got[:1]) == [[1]]
        last = got[-1][0]
        assert last is not None and last.error is not None and "failing value 10" in last.error.message
        st = {m["name"]: m["inference_stats"] for m in s.statistics()["model_stats"]}
        assert st["a_pipe"]["fail"]["count"] == 1 and st["a_pipe"]["success"]["count"] == 0


@pytest.mark.parametrize("steps,outputs", [
    # post reads the decoupled TOK and the ensemble input IN
    (step("repeat", "IN", "IN", "OUT", "TOK") + ', { model_name: "add" input_map [{ key: "P" value: "TOK" }, { key: "Q" value: "IN" }] output_map { key: "S" value: "SUM" } }', out("SUM")),
    # one output per response of repeat, one output once
    (step("repeat", "IN", "IN", "OUT", "TOK") + ", " + step("pre", "A", "IN", "B", "SCALED"), out("TOK") + ", " + out("SCALED")),
])
def test_mixed_lineage_is_refused(repo, steps, outputs):
    write_model(repo, "add", """
backend: "expr"
max_batch_size: 0
input [{ name: "P" data_type: TYPE_INT32 dims: [-1] }, { name: "Q" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "S" data_type: TYPE_INT32 dims: [-1] }]
parameters { key: "S" value { string_value: "P + Q" } }
""")
    write_model(repo, "mixed", ensemble(steps, outputs))
    with make_server(repo, exit_on_error=False) as s:
        assert "originate from different decoupled models" in s.load_errors["mixed"]


def test_cancelling_the_stream_reaches_the_steps(repo):
    # post waits (up to 5 s) for its request to be cancelled
    write_model(repo, "post", expr("Y", "Z", "Y + 1", 'parameters { key: "cancel_wait_ms" value { string_value: "5000" } }'))
    with make_server(repo) as s:
        post = s.manager.get("post").instances[0]

        async def first_then_cancel():
            stream = s.infer_stream(req("a_pipe", [1]))
            task = asyncio.ensure_future(stream.__anext__())
            # waits on a thread: the loop runs the stream meanwhile
            await asyncio.to_thread(wait_until, lambda: post.active, "post executing", 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await stream.aclose()

        asyncio.run(first_then_cancel())
        ens = s.manager.get("a_pipe")
        wait_until(lambda: ens.stats.pending == 0, "the ensemble request to end", 10)
        assert post.saw_cancel
        assert ens.stats.fail.count == 1 and ens.stats.fail_by_reason["CANCELED"] == 1


def test_grpc_stream_of_a_decoupled_ensemble(repo):
    server = make_server(repo)
    server.start()
    loop = LoopThread()
    fe = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(fe.start())
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        r = pb.ModelInferRequest(model_name="a_pipe", id="g")
        r.inputs.add(name="IN", datatype="INT32", shape=[2])
        r.raw_input_contents.append(np.array([1, 2], np.int32).tobytes())
        r.parameters["triton_enable_empty_final_response"].bool_param = True
        got = list(stub.ModelStreamInfer(iter([r]), timeout=20))
        assert all(not m.error_message for m in got)
        finals = [m.infer_response.parameters["triton_final_response"].bool_param for m in got]
        assert finals[-1] and not any(finals[:-1])
        data = [np.frombuffer(m.infer_response.raw_output_contents[0], np.int32).tolist()
                for m in got if m.infer_response.raw_output_contents]
        assert data == [[1, 1], [11, 21], [21, 41]]
        assert all(m.infer_response.model_name == "a_pipe" and m.infer_response.id == "g" for m in got)
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(r)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        ch.close()
    finally:
        loop.run(fe.stop(0))
        loop.close()
        server.stop()


def test_max_inflight_requests_pauses_the_producer(tmp_path):
    import threading

    import expr_backend

    write_model(tmp_path, "pre", expr("A", "B", "A * 10"))
    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    write_model(tmp_path, "post", expr("Y", "Z", "Y + 1",
                                       'parameters { key: "block_value" value { string_value: "0" } }'))
    cfg = ensemble(PIPELINE, out("RESULT")).replace(
        "ensemble_scheduling {", "ensemble_scheduling { max_inflight_requests: 1")
    write_model(tmp_path, "limited", cfg)
    with make_server(tmp_path) as s:
        post = s.manager.get("post")
        gate = s.manager.get("limited").step_gates[2]
        expr_backend.GATE.clear()
        try:
            got: list = []
            t = threading.Thread(target=lambda: got.extend(collect(s, req("limited", [1]))))
            t.start()
            # the first post request holds the step; the other two responses of "repeat"
            # wait for room at the step instead of queueing at post
            wait_until(lambda: post.instances[0].blocked == 1 and len(gate.waiting) == 2,
                       "two starts waiting at the full step")
            assert post.stats.pending == 1 and gate.in_flight == 1
        finally:
            expr_backend.GATE.set()
        t.join(20)
        assert sorted(values(got)) == [[1], [11], [21]]
        assert gate.in_flight == 0 and not gate.waiting  # every slot given back


def test_a_full_step_never_blocks_the_event_loop(tmp_path):
    """A cache hit answers a step on the event loop; when the next step is full, its start
    must queue, not wait on the loop for a slot (it stalled the loop while the step ran)."""
    import threading

    import expr_backend

    write_model(tmp_path, "pre", expr("A", "B", "A * 10", "response_cache { enable: true }"))
    write_model(tmp_path, "post", expr("Y", "Z", "Y + 1",
                                       'parameters { key: "block_value" value { string_value: "10" } }'))
    steps = ", ".join([step("pre", "A", "IN", "B", "SCALED"), step("post", "Y", "SCALED", "Z", "RESULT")])
    cfg = ensemble(steps, out("RESULT")).replace(
        "ensemble_scheduling {", "ensemble_scheduling { max_inflight_requests: 1")
    write_model(tmp_path, "limited", cfg)
    with make_server(tmp_path, cache_config={"local": {"size": "1048576"}}) as s:
        post = s.manager.get("post")
        expr_backend.GATE.clear()
        lt = LoopThread()
        try:
            first = asyncio.run_coroutine_threadsafe(s.infer_async(req("limited", [1])), lt.loop)  # pre runs, post blocks
            wait_until(lambda: post.instances[0].blocked == 1, "post holds the step")
            second = asyncio.run_coroutine_threadsafe(s.infer_async(req("limited", [1])), lt.loop)  # pre: a hit, on the loop
            gate = s.manager.get("limited").step_gates[1]
            wait_until(lambda: len(gate.waiting) == 1, "the second start queued")
            ticked = threading.Event()
            lt.loop.call_soon_threadsafe(ticked.set)
            assert ticked.wait(10), "the event loop is blocked"
        finally:
            expr_backend.GATE.set()
        for fut in (first, second):
            resp = fut.result(20)
            assert resp.error is None and resp.outputs[0].as_numpy().tolist() == [11]
        lt.close()
