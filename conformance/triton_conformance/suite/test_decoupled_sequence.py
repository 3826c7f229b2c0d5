"""Decoupled (several responses per request) and sequence (stateful) behaviour, where declared;
and KIND_GPU instances where declared."""

from __future__ import annotations

import importlib.util
import queue

import numpy as np
import pytest

from triton_core.conformance_spec import DECOUPLED_REPEAT, IDENTITY, SEQUENCE_ACCUMULATE
from triton_core.errors import TritonError
from triton_core.request import InferenceRequest
from triton_core.tensor import Tensor

from ..data import assert_same, sample
from .conftest_helpers import client_for


def _check_repeat(values: np.ndarray, responses: list[dict[str, np.ndarray]]) -> None:
    assert len(responses) == len(values), f"{len(responses)} responses for {len(values)} elements"
    for i, (v, r) in enumerate(zip(values, responses, strict=True)):
        assert_same(r["OUT"], np.array([v], dtype=np.int32), f"response {i} OUT")
        assert_same(r["IDX"], np.array([i], dtype=np.uint32), f"response {i} IDX")


@pytest.mark.capability("decoupled")
@pytest.mark.parametrize("n", [0, 1, 5])
def test_decoupled_inproc(triton_harness, n):
    h = triton_harness
    model = h.ready_model(DECOUPLED_REPEAT)
    values = np.arange(10, 10 + n, dtype=np.int32)
    req = InferenceRequest(model_name=model, inputs={"IN": Tensor.from_numpy("IN", values)})
    got, finals = [], 0
    for resp, final in h.server.infer_iter(req, timeout=30):
        if resp is not None:
            assert resp.error is None, resp.error
            if resp.outputs:
                got.append({t.name: t.as_numpy() for t in resp.outputs})
        finals += final
    assert finals == 1
    _check_repeat(values, got)


@pytest.mark.capability("decoupled")
def test_decoupled_grpc_stream(triton_harness):
    h = triton_harness
    model = h.ready_model(DECOUPLED_REPEAT)
    c = client_for(h, "grpc")
    mod = c.mod
    client = mod.InferenceServerClient(c.url)
    q: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: q.put((result, error)))
    try:
        values = np.array([3, 1, 4, 1, 5], dtype=np.int32)
        inp = mod.InferInput("IN", [len(values)], "INT32")
        inp.set_data_from_numpy(values)
        client.async_stream_infer(model, [inp], request_id="r1",
                                  enable_empty_final_response=True)
        got = []
        while True:
            result, error = q.get(timeout=30)
            assert error is None, error
            resp = result.get_response()
            final = resp.parameters.get("triton_final_response")
            if resp.outputs:
                got.append({o.name: result.as_numpy(o.name) for o in resp.outputs})
            if final is not None and final.bool_param:
                break
        _check_repeat(values, got)
    finally:
        client.stop_stream()
        client.close()


@pytest.mark.capability("decoupled")
def test_decoupled_refused_by_unary_infer(triton_harness):
    """A decoupled model asked through a one-response API: a clear error, not a hang."""
    h = triton_harness
    model = h.ready_model(DECOUPLED_REPEAT)
    req = InferenceRequest(model_name=model, inputs={"IN": Tensor.from_numpy(
        "IN", np.array([1], dtype=np.int32))})
    with pytest.raises(TritonError) as ei:
        h.server.infer(req, timeout=30)
    assert "decoupled" in ei.value.message


def _core_sequence_reason() -> str:
    if importlib.util.find_spec("triton_core.scheduling.sequence") is None:
        return ("the core has no sequence batcher yet (triton_core.scheduling.sequence): "
                "sequence models cannot run")
    return ""


@pytest.mark.capability("sequence")
def test_sequence_accumulate(triton_harness):
    h = triton_harness
    reason = _core_sequence_reason()
    if reason:
        pytest.skip(reason)
    model = h.ready_model(SEQUENCE_ACCUMULATE)
    from triton_core.request import REQUEST_FLAG_SEQUENCE_END, REQUEST_FLAG_SEQUENCE_START

    for corr in (11, 12):
        total = 0
        values = [3, 4, 5, corr]
        for i, v in enumerate(values):
            flags = (REQUEST_FLAG_SEQUENCE_START if i == 0 else 0) | \
                (REQUEST_FLAG_SEQUENCE_END if i == len(values) - 1 else 0)
            shape = (1, 1) if h.server.model_config(model).max_batch_size > 0 else (1,)
            req = InferenceRequest(model_name=model, correlation_id=corr, flags=flags, inputs={
                "INPUT0": Tensor.from_numpy("INPUT0", np.full(shape, v, dtype=np.int32))})
            total += v
            out = h.server.infer(req, timeout=30).output("OUTPUT0").as_numpy()
            assert int(out.reshape(-1)[0]) == total


@pytest.mark.capability("gpu")
def test_gpu_instance(triton_harness):
    h = triton_harness
    if h.spec.gpu_available is not None:
        reason = h.spec.gpu_available()
        if reason:
            pytest.skip(f"no GPU usable here: {reason}")
    dtype = "FP32" if "FP32" in h.caps.dtypes else h.caps.dtypes[0]
    src = h.ready_model(IDENTITY, dtype)
    name = "conf_gpu"
    folder = h.copy_model(src, name)
    cfg = folder / "config.pbtxt"
    lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("instance_group")]
    cfg.write_text("\n".join(lines) + "\ninstance_group [{ kind: KIND_GPU count: 1 }]\n")
    h.server.load_model(name)
    try:
        shape = (1, 4) if h.caps.batching else (4,)
        x = sample(dtype, shape)
        assert_same(h.client("inproc").infer(name, [("INPUT0", dtype, x)])["OUTPUT0"], x)
    finally:
        h.server.unload_model(name)
