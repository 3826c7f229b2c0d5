"""The execution drivers (scheduling/driver.py): which one an instance gets, and what each
promises: a thread driver's executes run on the instance's own thread; a loop driver's
are sent from the engine loop, read when their descriptor turns readable, and left to a
thread when they are slow."""

import asyncio
import concurrent.futures
import json
import threading

import numpy as np
import pytest

import expr_backend
from expr_backend import ADD_SUB, REPEAT_DECOUPLED, make_server, write_model
from triton_core import ErrorCode, InferenceRequest, Tensor, TritonError
from triton_core.scheduling.engine_loop import EngineLoop
from triton_core.scheduling.loop_driver import LoopDriver
from triton_core.scheduling.policy import DriverPolicy
from triton_core.scheduling.thread_driver import ThreadDriver
from triton_core.testing import serving_http, wait_until

REMOTE = """
parameters { key: "remote" value { string_value: "1" } }
parameters { key: "block_value" value { string_value: "99" } }
parameters { key: "fail_on" value { string_value: "77" } }
"""
BATCHED = 'dynamic_batching { max_queue_delay_microseconds: 100 }\n'
A = np.arange(16, dtype=np.int32).reshape(1, 16)


def _req(model: str, b: int) -> InferenceRequest:
    return InferenceRequest(model, inputs={
        "INPUT0": Tensor.from_numpy("INPUT0", A),
        "INPUT1": Tensor.from_numpy("INPUT1", np.full((1, 16), b, np.int32))})


async def _add(s, model: str, b: int) -> None:
    resp = await s.infer_async(_req(model, b))
    np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), A + b)


def test_each_instance_gets_its_driver_once_at_load(tmp_path):
    write_model(tmp_path, "local", ADD_SUB)
    write_model(tmp_path, "radd", ADD_SUB + REMOTE + 'instance_group [{ count: 2 }]')
    write_model(tmp_path, "rbatch", ADD_SUB + REMOTE + BATCHED)  # a batcher: the thread takes
    write_model(tmp_path, "repeat", REPEAT_DECOUPLED)
    with make_server(tmp_path) as s:
        kinds = {n: [type(d) for d in s.manager.get(n).drivers]
                 for n in ("local", "radd", "rbatch", "repeat")}
    assert kinds == {"local": [ThreadDriver], "radd": [LoopDriver, LoopDriver],
                     "rbatch": [ThreadDriver], "repeat": [ThreadDriver]}


def test_thread_driver_runs_every_execute_on_the_instance_thread(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as s:
        lv = s.manager.get("add")
        inst = lv.instances[0]
        seen: list[int] = []
        orig = inst.execute

        def spy(requests, timer):
            seen.append(threading.get_ident())
            return orig(requests, timer)

        inst.execute = spy

        async def run() -> int:
            await asyncio.gather(*(_add(s, "add", i) for i in range(20)))
            return threading.get_ident()

        loop_thread = asyncio.run(run())
        assert len(seen) == 20 and set(seen) == {lv.drivers[0].thread.ident}
        assert loop_thread not in seen


def test_loop_driver_sends_from_the_loop_and_reads_answers_when_ready(tmp_path):
    """Sent from the serving loop (never waited for there), two outstanding at once, one
    running; a remote failure fails that request only."""
    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    with make_server(tmp_path) as s:
        inst = s.manager.get("radd").instances[0]
        waits: list[tuple[int, float]] = []
        orig_wait = expr_backend._Remote.wait

        def spy_wait(self, timeout):
            waits.append((threading.get_ident(), timeout))
            return orig_wait(self, timeout)

        async def run() -> int:
            s.engine_loop.attach(asyncio.get_running_loop())  # as a front end does
            try:
                await asyncio.gather(*(_add(s, "radd", i) for i in range(40)))
                with pytest.raises(TritonError) as e:
                    await _add(s, "radd", 77)
                assert "failing value 77" in e.value.message
                await _add(s, "radd", 1)
            finally:
                s.engine_loop.detach(asyncio.get_running_loop())
            return threading.get_ident()

        expr_backend._Remote.wait = spy_wait
        try:
            me = asyncio.run(run())
        finally:
            expr_backend._Remote.wait = orig_wait
        assert inst.begun_on == [me] * 42
        assert waits and all(t == me and timeout == 0 for t, timeout in waits)
        assert inst.max_outstanding == 2 and inst.max_active == 1 and inst.outstanding == 0
        st = s.statistics("radd")["model_stats"][0]["inference_stats"]
        assert st["success"]["count"] == 41 and st["fail"]["count"] == 1


def test_loop_driver_leaves_a_slow_execute_to_a_thread_and_keeps_serving(tmp_path):
    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    write_model(tmp_path, "local", ADD_SUB)
    with make_server(tmp_path, policy=DriverPolicy(loop_patience_s=0.001)) as s:
        inst = s.manager.get("radd").instances[0]
        taken: list[int] = []
        orig_result = expr_backend._Remote.result

        def spy_result(self):
            taken.append(threading.get_ident())
            return orig_result(self)

        async def run() -> int:
            loop = asyncio.get_running_loop()
            s.engine_loop.attach(loop)
            expr_backend.GATE.clear()
            try:
                blocked = inst.blocked
                slow = asyncio.gather(_add(s, "radd", 99), *(_add(s, "radd", i) for i in range(4)))
                await asyncio.to_thread(wait_until, lambda: inst.blocked > blocked,
                                        "the slow call to reach the backend")
                await _add(s, "local", 5)  # the loop serves on meanwhile
                driver = s.manager.get("radd").drivers[0]
                await asyncio.to_thread(wait_until, lambda: driver.away,
                                        "the slow execute left to a thread")
                assert not slow.done()
            finally:
                expr_backend.GATE.set()
                await asyncio.wait_for(slow, 10)
                s.engine_loop.detach(loop)
            return threading.get_ident()

        expr_backend._Remote.result = spy_result
        try:
            me = asyncio.run(run())
        finally:
            expr_backend._Remote.result = orig_result
        assert len(taken) == 5 and set(taken) - {me}  # a thread waited for the slow one
        assert s.manager.get("radd").inflight.wait_idle(5)
        assert s.statistics("radd")["model_stats"][0]["inference_stats"]["success"]["count"] == 5


def test_loop_driver_serves_requests_from_threads_on_the_engine_loop(tmp_path):
    """Without a front end, blocking infer() calls from many threads are driven on the
    server's private engine loop, in FIFO order."""
    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    with make_server(tmp_path) as s:
        inst = s.manager.get("radd").instances[0]

        def one(i):
            b = np.full((1, 16), i % 50, np.int32)  # not REMOTE's 77 (fails) or 99 (blocks)
            np.testing.assert_array_equal(s.model("radd").infer({"INPUT0": A, "INPUT1": b})
                                          ["OUTPUT0"], A + b)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(200)))
        _, engine_thread = s.engine_loop.get()
        assert set(inst.begun_on) == {engine_thread}
        assert inst.max_outstanding == 2 and inst.max_active == 1


def test_front_end_loop_drives_the_instance(tmp_path):
    import urllib.request

    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    with make_server(tmp_path) as s, serving_http(s) as addr:
        inst = s.manager.get("radd").instances[0]
        loop, front_thread = s.engine_loop.get()
        body = json.dumps({"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}).encode()
        for _ in range(3):
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://{addr}/v2/models/radd/infer", data=body, method="POST")) as r:
                assert r.status == 200
        assert inst.begun_on[-3:] == [front_thread] * 3
    assert loop.is_closed() or not loop.is_running()


def test_a_cancelled_request_waiting_for_the_instance_never_runs(tmp_path):
    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    with make_server(tmp_path) as s:
        inst = s.manager.get("radd").instances[0]

        async def run() -> None:
            loop = asyncio.get_running_loop()
            s.engine_loop.attach(loop)
            expr_backend.GATE.clear()
            try:
                blocked = inst.blocked
                first = [asyncio.ensure_future(_add(s, "radd", 99)),
                         asyncio.ensure_future(_add(s, "radd", 1))]  # depth 2: both sent
                last = asyncio.ensure_future(_add(s, "radd", 3))  # waits in the queue
                await asyncio.to_thread(wait_until, lambda: inst.blocked > blocked,
                                        "the slow call to reach the backend")
                last.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await last
            finally:
                expr_backend.GATE.set()
            await asyncio.wait_for(asyncio.gather(*first), 10)
            s.engine_loop.detach(loop)

        asyncio.run(run())
        assert 3 not in inst.begun_b
        assert s.manager.get("radd").inflight.wait_idle(5)
        st = s.statistics("radd")["model_stats"][0]["inference_stats"]
        assert st["success"]["count"] == 2 and st["fail"]["count"] == 1


def test_loop_driver_fails_the_batch_when_begin_execute_raises(tmp_path, monkeypatch):
    write_model(tmp_path, "radd", ADD_SUB + REMOTE)
    with make_server(tmp_path) as s:
        inst = s.manager.get("radd").instances[0]

        def broken(requests, timer):
            raise RuntimeError("cannot reach the worker")

        monkeypatch.setattr(inst, "begin_execute", broken)
        with pytest.raises(TritonError) as e:
            s.model("radd").infer({"INPUT0": A, "INPUT1": A})
        assert e.value.code is ErrorCode.INTERNAL and "cannot reach the worker" in e.value.message
        monkeypatch.undo()
        s.model("radd").infer({"INPUT0": A, "INPUT1": A})  # the server keeps serving


def test_engine_loop_prefers_an_attached_loop_and_starts_a_private_one_otherwise():
    engine = EngineLoop()
    private, private_thread = engine.get()
    assert private.is_running() and private_thread != threading.get_ident()
    gen = engine.generation
    mine = asyncio.new_event_loop()
    engine.attach(mine)
    assert engine.get() == (mine, threading.get_ident()) and engine.generation > gen
    engine.detach(mine)
    assert engine.get() == (private, private_thread)
    engine.close()
    mine.close()
    wait_until(lambda: private.is_closed(), "the private loop closed")
