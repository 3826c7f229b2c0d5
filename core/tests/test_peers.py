"""peers.py: the front-end processes' sums, and the socket they ask each other over."""

from __future__ import annotations

import pytest

from triton_core.errors import ErrorCode, TritonError
from triton_core.peers import Peers, merge_families, merge_model_stats


def _stats(count: int, last: int, batches: dict[int, int], version: str = "1") -> dict:
    d = {"count": count, "ns": count * 10}
    return {"name": "m", "version": version, "last_inference": last, "inference_count": count,
            "execution_count": count,
            "inference_stats": {k: dict(d) for k in ("success", "fail", "queue", "compute_input",
                                                     "compute_infer", "compute_output",
                                                     "cache_hit", "cache_miss")},
            "response_stats": {}, "memory_usage": [],
            "batch_stats": [{"batch_size": b, **{k: {"count": n, "ns": n}
                                                 for k in ("compute_input", "compute_infer",
                                                           "compute_output")}}
                            for b, n in batches.items()]}


def test_statistics_add_up_and_the_last_inference_is_the_latest():
    merged = merge_model_stats([{"model_stats": [_stats(3, 100, {1: 3})]},
                                {"model_stats": [_stats(5, 70, {1: 1, 4: 1}),
                                                 _stats(2, 5, {}, version="2")]}])
    one, two = merged["model_stats"]
    assert (one["version"], two["version"]) == ("1", "2")
    assert one["inference_count"] == 8 and one["execution_count"] == 8
    assert one["last_inference"] == 100
    assert one["inference_stats"]["success"] == {"count": 8, "ns": 80}
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in one["batch_stats"]] == [(1, 4), (4, 1)]
    assert two["inference_count"] == 2


LOAD = "nv_model_load_duration_secs"


def test_metric_samples_add_up_except_the_load_time():
    a = [("nv_inference_count", "counter", "n", [("nv_inference_count", {"model": "m"}, 2)]),
         (LOAD, "gauge", "t", [(LOAD, {"model": "m"}, 0.5)])]
    b = [("nv_inference_count", "counter", "n", [("nv_inference_count", {"model": "m"}, 3),
                                                 ("nv_inference_count", {"model": "k"}, 1)]),
         (LOAD, "gauge", "t", [(LOAD, {"model": "m"}, 0.25)])]
    merged = {name: samples for name, _, _, samples in merge_families([a, b])}
    assert merged["nv_inference_count"] == [("nv_inference_count", {"model": "m"}, 5),
                                            ("nv_inference_count", {"model": "k"}, 1)]
    assert merged[LOAD] == [(LOAD, {"model": "m"}, 0.5)]


def _refuse(request: dict) -> None:
    raise TritonError.unsupported("not here")


@pytest.fixture
def three(tmp_path):
    group = [Peers(str(tmp_path), i, 3) for i in range(3)]
    for p in group[:2]:  # the third never starts: it is left out of every answer
        p.handle("whoami", lambda r, i=p.index: {"index": i, "echo": r["x"]})
        p.handle("fails", lambda r: 1 / 0)
        p.handle("refuses", _refuse)
        p.start()
    yield group
    for p in group:
        p.close()


def test_a_process_hears_every_other_that_answers(three):
    assert three[0].ask_others("whoami", x=7) == [{"index": 1, "echo": 7}]
    assert three[1].ask_others("whoami", x=8) == [{"index": 0, "echo": 8}]


def test_a_failing_or_unknown_question_is_left_out_and_the_peer_keeps_answering(three):
    assert three[0].ask_others("fails") == []
    assert three[0].ask_others("no such op") == []
    assert three[0].ask_others("whoami", x=1) == [{"index": 1, "echo": 1}]


def test_each_answer_comes_back_with_its_process_and_a_triton_error_keeps_its_code(three):
    (one, refused), (two, missing) = three[0].ask_each("refuses")
    assert (one, two) == (1, 2)
    assert isinstance(refused, TritonError) and refused.code is ErrorCode.UNSUPPORTED
    assert refused.message == "not here"
    assert isinstance(missing, OSError)  # the third process never listened


class _AskedPeers:
    """Stands in for Peers in wait_for_the_others: answers 'loaded' from a list."""

    def __init__(self, answers: list[list[tuple[int, object]]]) -> None:
        self.answers = answers
        self.asked = 0

    def ask_each(self, op: str) -> list[tuple[int, object]]:
        assert op == "loaded"
        self.asked += 1
        return self.answers[min(self.asked, len(self.answers)) - 1]


def test_a_process_accepts_only_once_every_other_has_loaded():
    import types

    from triton_core.frontend_processes import wait_for_the_others

    still_loading = [(1, False), (2, True)]
    not_there_yet = [(1, ConnectionRefusedError()), (2, True)]
    peers = _AskedPeers([not_there_yet, still_loading, [(1, True), (2, True)]])
    server = types.SimpleNamespace(peers=peers, stop_deadline=None)
    assert wait_for_the_others(server) is True and peers.asked == 3


def test_a_stop_while_waiting_for_the_others_gives_up():
    import types

    from triton_core.frontend_processes import wait_for_the_others

    server = types.SimpleNamespace(stop_deadline=None)

    class Stopping(_AskedPeers):
        def ask_each(self, op):
            server.stop_deadline = 1.0  # a signal: another process failed
            return super().ask_each(op)

    server.peers = Stopping([[(1, False)]])
    assert wait_for_the_others(server) is False
