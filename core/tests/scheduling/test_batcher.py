"""The dynamic batcher: batching, preferred sizes, shapes, priorities, queue policies,
ordering, timeouts and cancellation (expr test backend)."""

import concurrent.futures
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import expr_backend
from expr_backend import make_server, write_model
from triton_core import ErrorCode, InferenceRequest, Tensor, TritonError
from triton_core.scheduling.clock import ManualClock
from triton_core.testing import LoopThread, wait_until


def model_cfg(max_batch=8, batching="dynamic_batching { }", count=1, dims="[ 4 ]", extra="",
              ragged=False):
    rag = " allow_ragged_batch: true" if ragged else ""
    return f"""
backend: "expr"
max_batch_size: {max_batch}
input [{{ name: "X" data_type: TYPE_FP32 dims: {dims}{rag} }}]
output [{{ name: "Y" data_type: TYPE_FP32 dims: {dims} }}]
instance_group [{{ kind: KIND_CPU count: {count} }}]
{batching}
parameters {{ key: "Y" value {{ string_value: "X * 2 + 1" }} }}
parameters {{ key: "block_value" value {{ string_value: "-7" }} }}
{extra}
"""


def req(x, name="m", **kw):
    return InferenceRequest(model_name=name, inputs={"X": Tensor.from_numpy("X", np.asarray(x, np.float32))},
                            **kw)


def instance(server, name="m", i=0):
    return server.manager.get(name).instances[i]


class Blocker:
    """Hold the instance busy with a request that waits on expr_backend.GATE."""

    def __init__(self, server, name="m", shape=(1, 4), clock=None):
        self.server = server
        self.name = name
        self.shape = shape
        self.clock = clock  # the server's ManualClock, if any

    def __enter__(self):
        expr_backend.GATE.clear()
        self.pool = concurrent.futures.ThreadPoolExecutor(16)
        inst = instance(self.server, self.name)
        before = inst.blocked
        self.fut = self.pool.submit(self.server.infer, req(np.full(self.shape, -7), self.name))
        queue = self.server.manager.get(self.name).queue
        if self.clock is not None and getattr(queue, "delay_ns", 0):
            # alone, the blocking request waits out the queue delay: move the clock past it
            level = queue.levels[0]
            wait_until(lambda: level.forming == 1, "the blocking request to wait for its batch", 5)
            self.clock.advance(queue.delay_ns / 1e9)
        wait_until(lambda: inst.blocked != before, "the blocking request to execute", 5)
        return self

    def submit(self, r):
        return self.pool.submit(self.server.infer, r)

    def release(self):
        expr_backend.GATE.set()

    def __exit__(self, *exc):
        expr_backend.GATE.set()
        self.fut.result(5)
        self.pool.shutdown()


def wait_queued(server, n, name="m"):
    lv = server.manager.get(name)
    wait_until(lambda: len(lv.queue) >= n, f"{n} requests queued", 5)


def test_batches_form_while_instance_busy_and_stats(tmp_path):
    write_model(tmp_path, "m", model_cfg())
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = [b.submit(req(np.full((1, 4), i))) for i in range(6)]
        wait_queued(s, 6)
        b.release()
        for i, f in enumerate(futs):
            np.testing.assert_array_equal(f.result(5).outputs[0].as_numpy(), np.full((1, 4), i * 2 + 1))
        assert instance(s).calls[-1] == 6
        st_ = s.statistics("m")["model_stats"][0]
        assert st_["inference_count"] == 7 and st_["execution_count"] == 2
        assert {b["batch_size"] for b in st_["batch_stats"]} == {1, 6}
        assert st_["inference_stats"]["success"]["count"] == 7


def test_preferred_batch_size_and_max(tmp_path):
    cfg = model_cfg(batching="dynamic_batching { preferred_batch_size: [ 4 ] "
                             "max_queue_delay_microseconds: 2000000 }")
    write_model(tmp_path, "m", cfg)
    clock = ManualClock()  # the batcher's time moves only when the test moves it
    with make_server(tmp_path, clock=clock) as s, Blocker(s, clock=clock) as b:
        level = s.manager.get("m").queue.levels[0]
        futs = [b.submit(req(np.full((1, 4), i))) for i in range(6)]
        wait_queued(s, 6)
        b.release()
        # The preferred size goes with the clock standing still: it does not wait the delay.
        for f in futs[:4]:
            f.result(5)
        assert instance(s).calls[1] == 4
        # The two left over wait for the delay (or the max): still waiting 0.5 s before it...
        wait_until(lambda: level.forming == 2, "the two left over to wait for the delay", 5)
        clock.advance(1.5)
        wait_until(lambda: clock.timeouts[-1:] == [0.5], "the batcher to wait the 0.5 s left", 5)
        assert not any(f.done() for f in futs[4:]) and len(instance(s).calls) == 2
        clock.advance(0.5)  # ... and going once it has passed
        for f in futs[4:]:
            f.result(5)
        assert instance(s).calls[2] == 2
    # Batches never exceed max_batch_size; requests of batch 3 do not split.
    write_model(tmp_path, "m", model_cfg(max_batch=8))
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = [b.submit(req(np.full((3, 4), i))) for i in range(4)]
        wait_queued(s, 4)
        b.release()
        for f in futs:
            assert f.result(5).outputs[0].shape == (3, 4)
        assert instance(s).calls[1:] == [6, 6]


def test_shapes_batch_only_when_equal_unless_ragged(tmp_path):
    write_model(tmp_path, "m", model_cfg(dims="[ -1 ]"))
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = [b.submit(req(np.full((1, 2 + i % 2), i))) for i in range(4)]
        wait_queued(s, 4)
        b.release()
        for i, f in enumerate(futs):
            np.testing.assert_array_equal(f.result(5).outputs[0].as_numpy(),
                                          np.full((1, 2 + i % 2), 2 * i + 1))
        assert instance(s).batches[1:] == [2, 2]
    write_model(tmp_path, "m", model_cfg(dims="[ -1 ]", ragged=True))
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = [b.submit(req(np.full((1, 2 + i % 2), i))) for i in range(4)]
        wait_queued(s, 4)
        b.release()
        for i, f in enumerate(futs):
            np.testing.assert_array_equal(f.result(5).outputs[0].as_numpy(),
                                          np.full((1, 2 + i % 2), 2 * i + 1))
        assert instance(s).batches[1:] == [4]


def test_priority_levels(tmp_path):
    cfg = model_cfg(max_batch=1, batching="dynamic_batching { priority_levels: 3 "
                                          "default_priority_level: 2 }")
    write_model(tmp_path, "m", cfg)
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = []
        for i, prio in enumerate([3, 0, 2, 1, 9, 1]):  # 0 and out of range: the default (2)
            futs.append(b.submit(req(np.full((1, 4), i), priority=prio)))
            wait_queued(s, i + 1)
        b.release()
        for f in futs:
            f.result(5)
        order = [int(r.inputs["X"].as_numpy()[0, 0]) for r in instance(s).order[1:]]
        assert order == [3, 5, 1, 2, 4, 0]


def test_max_queue_size_rejects(tmp_path):
    cfg = model_cfg(batching="dynamic_batching { default_queue_policy { max_queue_size: 2 } }")
    write_model(tmp_path, "m", cfg)
    with make_server(tmp_path) as s, Blocker(s) as b:
        futs = [b.submit(req(np.full((1, 4), i))) for i in range(2)]
        wait_queued(s, 2)
        with pytest.raises(TritonError) as e:
            s.infer(req(np.full((1, 4), 5)))
        assert e.value.code is ErrorCode.UNAVAILABLE and "Exceeds maximum queue size" in e.value.message
        b.release()
        for f in futs:
            f.result(5)
        st_ = s.statistics("m")["model_stats"][0]
        assert st_["inference_stats"]["fail"]["count"] == 1


def test_a_batch_waiting_for_its_delay_counts_towards_max_queue_size(tmp_path):
    # Triton's test_descriptive_status_code: the first request waits (max_queue_delay) for
    # a preferred batch; a second one finds the queue of size 1 full: 503 / UNAVAILABLE
    cfg = model_cfg(batching="dynamic_batching { max_queue_delay_microseconds: 1000000 "
                             "preferred_batch_size: [ 8 ] "
                             "default_queue_policy { max_queue_size: 1 } }")
    write_model(tmp_path, "m", cfg)
    clock = ManualClock()
    with make_server(tmp_path, clock=clock) as s, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(s.infer, req(np.full((1, 4), 1)))
        level = s.manager.get("m").queue.levels[0]
        wait_until(lambda: level.forming == 1, "the first request to wait in a forming batch", 5)
        with pytest.raises(TritonError) as e:
            s.infer(req(np.full((1, 4), 2)))
        assert e.value.code is ErrorCode.UNAVAILABLE and "Exceeds maximum queue size" in e.value.message
        clock.advance(1.5)
        np.testing.assert_array_equal(first.result(5).outputs[0].as_numpy(), np.full((1, 4), 3))
        again = pool.submit(s.infer, req(np.full((1, 4), 2)))  # room again once the batch ran
        wait_until(lambda: level.forming == 1, "the second batch to form", 5)
        clock.advance(1.5)
        np.testing.assert_array_equal(again.result(5).outputs[0].as_numpy(), np.full((1, 4), 5))


def test_timeout_reject_and_override(tmp_path):
    cfg = model_cfg(batching="dynamic_batching { default_queue_policy { timeout_action: REJECT "
                             "default_timeout_microseconds: 100000 allow_timeout_override: true } }")
    write_model(tmp_path, "m", cfg)
    clock = ManualClock()
    with make_server(tmp_path, clock=clock) as s, Blocker(s) as b:
        slow = b.submit(req(np.full((1, 4), 1)))                   # default 100 ms
        short = b.submit(req(np.full((1, 4), 2), timeout_us=10_000))  # its own 10 ms
        wait_queued(s, 2)
        clock.advance(0.2)
        b.release()
        for f in (slow, short):
            with pytest.raises(TritonError) as e:
                f.result(5)
            assert e.value.code is ErrorCode.UNAVAILABLE and "Request timeout expired" in e.value.message
        from triton_core.frontends.metrics import Metrics
        text = Metrics(s, cpu_metrics=False).render().decode()
        assert 'nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 2' in text


def test_timeout_delay_runs_after_others(tmp_path):
    cfg = model_cfg(max_batch=1, batching="dynamic_batching { default_queue_policy { "
                    "timeout_action: DELAY default_timeout_microseconds: 50000 } }")
    write_model(tmp_path, "m", cfg)
    clock = ManualClock()
    with make_server(tmp_path, clock=clock) as s, Blocker(s) as b:
        first = b.submit(req(np.full((1, 4), 1)))
        wait_queued(s, 1)
        clock.advance(0.12)  # `first` times out: it is delayed, not rejected
        later = [b.submit(req(np.full((1, 4), i))) for i in (2, 3)]
        wait_queued(s, 3)
        b.release()
        first.result(5)
        for f in later:
            f.result(5)
        order = [int(r.inputs["X"].as_numpy()[0, 0]) for r in instance(s).order[1:]]
        assert order == [2, 3, 1]  # the timed-out request ran last


def test_request_timeout_without_batcher(tmp_path):
    write_model(tmp_path, "m", model_cfg(batching=""))
    clock = ManualClock()
    with make_server(tmp_path, clock=clock) as s, Blocker(s) as b:
        f = b.submit(req(np.full((1, 4), 1), timeout_us=10_000))
        wait_queued(s, 1)
        clock.advance(0.05)
        b.release()
        with pytest.raises(TritonError, match="Request timeout expired"):
            f.result(5)


@pytest.mark.parametrize("ordered", [True, False])
def test_preserve_ordering(tmp_path, ordered):
    flag = "preserve_ordering: true" if ordered else ""
    cfg = model_cfg(max_batch=1, count=2, batching=f"dynamic_batching {{ {flag} }}")
    write_model(tmp_path, "m", cfg)
    with make_server(tmp_path) as s:
        expr_backend.GATE.clear()
        done: list[int] = []
        lock = threading.Lock()
        evs = []

        def send(v):
            ev = threading.Event()
            r = req(np.full((1, 4), v))

            def cb(resp, flags):
                with lock:
                    done.append(v)
                ev.set()
            lv = s.manager.get("m")
            r.callback = cb
            lv.submit(r, 1)
            evs.append(ev)

        send(-7)   # blocks instance 0
        wait_until(lambda: sum(i.blocked for i in s.manager.get("m").instances) > 0,
                   "instance 0 blocked", 5)
        send(1)    # runs at once on instance 1
        evs[-1].wait(0.3)
        expr_backend.GATE.set()
        for ev in evs:
            assert ev.wait(5)
        assert done == ([-7, 1] if ordered else [1, -7])


def test_cancel_removes_queued_request(tmp_path):
    write_model(tmp_path, "m", model_cfg())
    with make_server(tmp_path) as s, Blocker(s), LoopThread() as lt:
        queue = s.manager.get("m").queue
        call = lt.submit(s.infer_async(req(np.full((1, 4), 3))))
        wait_until(lambda: len(queue) == 1, "the request queued")
        call.cancel()
        # removed while the instance is still blocked: not left in the queue to run
        wait_until(lambda: len(queue) == 0, "the cancelled request removed")
        assert call.cancelled()
        st_ = s.statistics("m")["model_stats"][0]
        assert st_["inference_stats"]["fail"]["count"] == 1
        from triton_core.frontends.metrics import Metrics
        text = Metrics(s, cpu_metrics=False).render().decode()
        assert 'nv_inference_request_failure{model="m",reason="CANCELED",version="1"} 1' in text


def test_cancel_visible_to_backend(tmp_path):
    extra = 'parameters { key: "cancel_wait_ms" value { string_value: "3000" } }'
    write_model(tmp_path, "m", model_cfg(extra=extra))
    with make_server(tmp_path) as s, LoopThread() as lt:
        call = lt.submit(s.infer_async(req(np.full((1, 4), 3))))
        wait_until(lambda: instance(s).order, "the request to execute", 3)
        call.cancel()
        wait_until(lambda: instance(s).saw_cancel, "the backend to see the cancellation", 3)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=24),
    gaps=st.lists(st.integers(0, 3), min_size=24, max_size=24),
    preferred=st.sampled_from(["", "preferred_batch_size: [ 2, 4 ]", "preferred_batch_size: [ 8 ]"]),
    delay=st.sampled_from([0, 500, 3000]),
    count=st.integers(1, 3),
)
def test_batched_results_equal_unbatched(tmp_path_factory, sizes, gaps, preferred, delay, count):
    repo = tmp_path_factory.mktemp("repo")
    cfg = model_cfg(max_batch=8, count=count, dims="[ 3 ]", batching=(
        f"dynamic_batching {{ {preferred} max_queue_delay_microseconds: {delay} }}"))
    write_model(repo, "m", cfg)
    rng = np.random.default_rng(len(sizes))
    with make_server(repo) as s, concurrent.futures.ThreadPoolExecutor(8) as pool:
        inputs = [rng.standard_normal((n, 3)).astype(np.float32) for n in sizes]
        futs = []
        for x, gap in zip(inputs, gaps, strict=False):
            futs.append(pool.submit(s.infer, req(x)))
            if gap:
                time.sleep(gap / 1000)
        for x, f in zip(inputs, futs, strict=True):
            out = f.result(10).outputs[0].as_numpy()
            np.testing.assert_array_equal(out, x * 2 + 1)
        st_ = s.statistics("m")["model_stats"][0]
        assert st_["inference_count"] == sum(sizes)
        assert max(b["batch_size"] for b in st_["batch_stats"]) <= 8
        executed = sum(b["compute_infer"]["count"] * b["batch_size"] for b in st_["batch_stats"])
        assert executed == sum(sizes)
