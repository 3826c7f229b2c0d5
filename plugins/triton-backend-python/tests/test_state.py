"""Implicit state (sequence_batching.state) with a python model."""

import numpy as np
from python_backend_helpers import build_repo, make_server

from triton_core import InferenceRequest, RequestedOutput, Tensor


def _req(v, flags, outputs=None):
    return InferenceRequest("accumulate_state", correlation_id=5, flags=flags,
                            inputs={"INPUT": Tensor.from_numpy("INPUT", np.array([v], np.int32))},
                            outputs=outputs)


def test_state_survives_requests_that_ask_for_some_outputs(tmp_path):
    server = make_server(build_repo(tmp_path, ["accumulate_state"]))
    with server:
        got = []
        for i, (v, flags) in enumerate([(1, 1), (2, 0), (3, 2)]):
            asked = [RequestedOutput("OUTPUT")] if i == 1 else None
            resp = server.infer(_req(v, flags, asked))
            assert [t.name for t in resp.outputs] == ["OUTPUT"]  # the state stays inside
            got.append(int(resp.output("OUTPUT").as_numpy()[0]))
        assert got == [1, 3, 6]


def test_direct_slots_pad_the_batch_of_a_python_model(tmp_path):
    server = make_server(build_repo(tmp_path, ["accumulate_slots"]))

    def step(corrid, v, flags=0):
        resp = server.infer(InferenceRequest(
            "accumulate_slots", correlation_id=corrid, flags=flags,
            inputs={"INPUT": Tensor.from_numpy("INPUT", np.array([[v]], np.int32))}))
        return int(resp.output("OUTPUT").as_numpy()[0, 0]), int(resp.output("ROWS").as_numpy()[0, 0])

    with server:
        assert step(7, 1, 1) == (1, 1)  # slot 0
        assert step(8, 10, 1) == (10, 2)  # slot 1: slot 0 is padded
        assert step(7, 2) == (3, 1)
        assert step(8, 20, 2) == (30, 2)
