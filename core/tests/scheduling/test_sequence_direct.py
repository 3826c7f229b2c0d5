# ruff: noqa: E501  (model configs read best on one line each)
"""The sequence batcher's direct strategy with batch slots: padding rows for empty slots."""

import concurrent.futures
import threading

import numpy as np

import expr_backend
from expr_backend import make_server, write_model
from triton_core import InferenceRequest, Tensor
from triton_core.scheduling.clock import ManualClock
from triton_core.testing import wait_until

START, END = 1, 2

SLOTTED = """
backend: "expr"
max_batch_size: 4
input [{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] },
        { name: "CTRL" data_type: TYPE_INT32 dims: [ 4 ] }]
sequence_batching {
  direct { %s }
  max_sequence_idle_microseconds: 20000000
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }] },
    { name: "END" control [{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }] },
    { name: "CORRID" control [{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }] }
  ]
  state [{ input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_INT32 dims: [ 1 ]
           initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" } }]
}
parameters { key: "OUTPUT" value { string_value: "ACC_IN + INPUT" } }
parameters { key: "ACC_OUT" value { string_value: "ACC_IN + INPUT" } }
parameters { key: "CTRL" value { string_value: "np.concatenate([START, END, READY, CORRID.astype(np.int32)], axis=-1)" } }
parameters { key: "block_value" value { string_value: "1000" } }
"""


def cfg(strategy: str = "") -> str:
    return SLOTTED % strategy


def seq(v: int, corrid: int, flags: int = 0) -> InferenceRequest:
    return InferenceRequest(model_name="acc", inputs={"INPUT": Tensor.from_numpy(
        "INPUT", np.full((1, 1), v, np.int32))}, correlation_id=corrid, flags=flags)


def out(resp, name="OUTPUT") -> list:
    return resp.output(name).as_numpy().reshape(-1).tolist()


def rows(inst, last: int) -> list:
    """What the backend saw in its last ``last`` executes: per execute, per row, the
    correlation id of a real request or the control values of a padding row."""
    shown = []
    n = sum(inst.batches[-last:])
    reqs = inst.order[len(inst.order) - n:]
    for size in inst.batches[-last:]:
        batch, reqs = reqs[:size], reqs[size:]
        shown.append([r.correlation_id if r.correlation_id else
                      ("pad", *(int(r.inputs[c].as_numpy().reshape(-1)[0])
                                for c in ("START", "END", "READY", "CORRID", "INPUT", "ACC_IN")))
                      for r in batch])
    return shown


PAD = ("pad", 0, 0, 0, 0, 0, 0)  # nothing ready, zero input and state


def test_empty_slots_below_a_request_are_padded(tmp_path):
    write_model(tmp_path, "acc", cfg())
    with make_server(tmp_path) as s:
        inst = s.manager.get("acc").instances[0]
        assert out(s.infer(seq(1, 11, START))) == [1]  # slot 0
        assert out(s.infer(seq(2, 22, START))) == [2]  # slot 1
        r = s.infer(seq(3, 33, START))  # slot 2
        assert out(r) == [3] and out(r, "CTRL") == [1, 0, 1, 33]
        assert rows(inst, 3) == [[11], [PAD, 22], [PAD, PAD, 33]]
        assert out(s.infer(seq(10, 11))) == [11]  # slot 0: nothing below, no padding
        assert out(s.infer(seq(10, 33))) == [13]  # the padding rows left slots 0 and 1 alone
        assert rows(inst, 2) == [[11], [PAD, PAD, 33]]
        r = s.infer(seq(5, 22, END))
        assert out(r) == [7] and out(r, "CTRL") == [0, 1, 1, 22]
        # slot 1 is free again: the next sequence takes it (the lowest free slot)
        assert out(s.infer(seq(4, 44, START))) == [4]
        assert out(s.infer(seq(1, 33, END))) == [14]
        assert rows(inst, 3) == [[PAD, 22], [PAD, 44], [PAD, PAD, 33]]
        st = s.statistics("acc")["model_stats"][0]
        assert st["inference_stats"]["success"]["count"] == 8  # padding rows are nobody's requests


def test_requests_of_several_slots_share_a_batch_around_a_gap(tmp_path):
    write_model(tmp_path, "acc", cfg())
    with make_server(tmp_path) as s:
        inst = s.manager.get("acc").instances[0]
        for cid in (11, 22, 33):
            s.infer(seq(1, cid, START))
        got = {}
        expr_backend.GATE.clear()
        try:
            blocker = threading.Thread(target=lambda: got.update(b=s.infer(seq(1000, 22))))
            blocker.start()
            wait_until(lambda: inst.blocked, "slot 1 to execute and wait on the gate")
            threads = [threading.Thread(target=lambda c=c: got.update({c: s.infer(seq(5, c))}))
                       for c in (11, 33)]
            for t in threads:
                t.start()
            wait_until(lambda: len(s.manager.get("acc").queue) >= 2, "two requests queued")
        finally:
            expr_backend.GATE.set()
        blocker.join(10)
        for t in threads:
            t.join(10)
        assert rows(inst, 2) == [[PAD, 22], [11, PAD, 33]]
        assert out(got["b"]) == [1001] and out(got[11]) == [6] and out(got[33]) == [6]
        assert out(got[11], "CTRL") == [0, 0, 1, 11] and out(got[33], "CTRL") == [0, 0, 1, 33]


def test_minimum_slot_utilization_waits_for_slots_at_most_the_delay(tmp_path):
    write_model(tmp_path, "acc", cfg("max_queue_delay_microseconds: 2000000 minimum_slot_utilization: 0.5"))
    clock = ManualClock()  # the scheduler's time moves only when the test moves it
    with make_server(tmp_path, clock=clock) as s, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        inst = s.manager.get("acc").instances[0]
        queue = s.manager.get("acc").queue
        first = pool.submit(s.infer, seq(1, 11, START))  # 1 of 4 slots: waits the whole delay
        wait_until(lambda: clock.timeouts[-1:] == [2.0], "the scheduler to wait for the delay")
        clock.advance(1.5)
        # it looked again at 1.5 s and kept waiting: the request is not released before the delay
        wait_until(lambda: clock.timeouts[-1:] == [0.5], "the scheduler to wait the 0.5 s left")
        assert not first.done() and inst.batches == []
        clock.advance(0.5)
        assert out(first.result(10)) == [1]
        # slots 1 and 2, in that order: 22 is queued (its slot taken) before 33 comes
        starts = [pool.submit(s.infer, seq(1, 22, START))]
        wait_until(lambda: len(queue) == 1, "22's start queued")
        starts.append(pool.submit(s.infer, seq(1, 33, START)))
        for f in starts:  # two of four slots ready: they go with the clock standing still
            f.result(10)
        assert rows(inst, 1) == [[PAD, 22, 33]]
        later = {c: pool.submit(s.infer, seq(2, c)) for c in (11, 33)}
        # two of four slots ready: one batch as soon as the second request came; the clock
        # does not move, so a scheduler waiting for the delay would never release it
        got = {c: f.result(10) for c, f in later.items()}
        assert rows(inst, 1) == [[11, PAD, 33]]
        assert out(got[11]) == [3] and out(got[33]) == [3]


REPEAT_SEQ = """
backend: "expr"
max_batch_size: 2
model_transaction_policy { decoupled: true }
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
sequence_batching {
  control_input [{ name: "READY" control [{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }] }]
}
parameters { key: "OUT" value { string_value: "IN * i + READY * 100" } }
parameters { key: "repeat" value { string_value: "2" } }
"""


def test_padding_rows_of_a_decoupled_model_answer_nobody(tmp_path):
    write_model(tmp_path, "rep", REPEAT_SEQ)
    with make_server(tmp_path) as s:
        def run(cid, v, flags=0):
            r = InferenceRequest(model_name="rep", inputs={"IN": Tensor.from_numpy("IN", np.full((1, 1), v, np.int32))},
                                 correlation_id=cid, flags=flags)
            return [(resp.output("OUT").as_numpy().reshape(-1).tolist() if resp is not None else None, final)
                    for resp, final in s.infer_iter(r, timeout=10)]

        assert run(1, 3, START) == [([100], False), ([103], False), (None, True)]  # slot 0
        assert run(5, 4, START) == [([100], False), ([104], False), (None, True)]  # slot 1, padded below
        inst = s.manager.get("rep").instances[0]
        pad = inst.order[-2]
        assert pad.correlation_id == 0 and pad.inputs["READY"].as_numpy().tolist() == [[0]]
