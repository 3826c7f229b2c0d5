"""System shared memory for inputs and outputs (HTTP and gRPC), and statistics counted."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from triton_core.conformance_spec import ADD_SUB, IDENTITY

from ..data import assert_same, sample, small_sample
from .conftest_helpers import client_for
from .test_inference import _add_sub


@pytest.mark.capability("shared_memory")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_system_shared_memory_inputs_outputs(triton_harness, protocol):
    import tritonclient.utils.shared_memory as shm

    h = triton_harness
    fixed_size = [d for d in h.caps.dtypes if d != "BYTES"]
    if not fixed_size:
        pytest.skip(f"backend '{h.backend}' declares only BYTES; this test moves fixed-size tensors")
    dtype = "FP32" if "FP32" in fixed_size else fixed_size[0]
    model = h.ready_model(IDENTITY, dtype)
    c = client_for(h, protocol)
    mod, client = c.mod, c.client
    shape = (2, 8) if h.caps.batching else (8,)
    x = sample(dtype, shape, seed=3)
    from ..harness import _from_client_array, _to_client_array

    cx = np.ascontiguousarray(_to_client_array(dtype, x))
    n = cx.nbytes
    tag = uuid.uuid4().hex[:8]
    in_key, out_key = f"/tcc_in_{tag}", f"/tcc_out_{tag}"
    ih = shm.create_shared_memory_region(f"in_{tag}", in_key, n)
    oh = shm.create_shared_memory_region(f"out_{tag}", out_key, n)
    try:
        shm.set_shared_memory_region(ih, [cx])
        client.register_system_shared_memory(f"in_{tag}", in_key, n)
        client.register_system_shared_memory(f"out_{tag}", out_key, n)
        inp = mod.InferInput("INPUT0", list(shape), dtype)
        inp.set_shared_memory(f"in_{tag}", n)
        out = mod.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory(f"out_{tag}", n)
        r = client.infer(model, [inp], outputs=[out])
        got = shm.get_contents_as_numpy(oh, cx.dtype, list(shape))
        assert_same(_from_client_array(dtype, got), x, "output read from shared memory")
        o = r.get_output("OUTPUT0")
        if isinstance(o, dict):
            # HTTP, as Triton: no parameters (its C++ client reads them as binary data's)
            assert "parameters" not in o and o["shape"] == list(shape)
        else:
            assert o.parameters["shared_memory_byte_size"].int64_param == n
    finally:
        try:
            client.unregister_system_shared_memory(f"in_{tag}")
            client.unregister_system_shared_memory(f"out_{tag}")
        finally:
            shm.destroy_shared_memory_region(ih)
            shm.destroy_shared_memory_region(oh)
    if os.path.isdir("/dev/shm"):
        assert not any(tag in f for f in os.listdir("/dev/shm"))


def _stats(h, model: str) -> dict:
    return h.server.statistics(model)["model_stats"][0]


@pytest.mark.capability("statistics")
@pytest.mark.parametrize("protocol", ["inproc", "http"])
def test_statistics_counted(triton_harness, protocol):
    """k successful requests of b rows: inference_count += k*b, success += k, executions in
    [1, k]; a refused request does not count as an inference."""
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    rows = 2 if h.caps.batching else 1
    shape = (rows, 16) if h.caps.batching else (16,)
    before = _stats(h, model)
    k = 5
    for i in range(k):
        a, b = small_sample(dt, shape, i), small_sample(dt, shape, 50 + i)
        out = c.infer(model, [("INPUT0", dt, a), ("INPUT1", dt, b)])
        assert_same(out["OUTPUT1"], _add_sub(dt, a, b)[1])
    after = _stats(h, model)
    assert after["inference_count"] - before["inference_count"] == k * rows
    ex = after["execution_count"] - before["execution_count"]
    assert 1 <= ex <= k, f"{ex} executions for {k} requests"
    s0, s1 = before["inference_stats"]["success"], after["inference_stats"]["success"]
    assert s1["count"] - s0["count"] == k
    assert s1["ns"] > s0["ns"]
    for key in ("queue", "compute_input", "compute_infer", "compute_output"):
        d = after["inference_stats"][key]
        assert d["count"] >= k and d["ns"] >= 0, f"{key}: {d}"
    assert after["last_inference"] > 0
    if protocol == "http":
        via = c.client.get_inference_statistics(model)["model_stats"]
        assert int(via[0]["inference_count"]) == after["inference_count"]
