"""Dynamic batching and instances: batched results equal unbatched ones under concurrent load;
execute is never called concurrently on one instance (watched from the core's side)."""

from __future__ import annotations

import numpy as np
import pytest

from triton_core.conformance_spec import ADD_SUB, IDENTITY

from ..data import assert_same, small_sample
from .conftest_helpers import client_for
from .test_inference import _add_sub

N_REQUESTS = 96
CONCURRENCY = 16


def _requests(h, model: str) -> list[tuple[np.ndarray, np.ndarray]]:
    dt = h.roles[model].datatype
    rng = np.random.default_rng(7)
    out = []
    for i in range(N_REQUESTS):
        rows = int(rng.integers(1, 3)) if h.caps.batching else 0
        shape = (rows, 16) if h.caps.batching else (16,)
        out.append((small_sample(dt, shape, 100 + i), small_sample(dt, shape, 500 + i)))
    return out


def _run(c, model, dt, reqs, concurrency):
    many = [[("INPUT0", dt, a), ("INPUT1", dt, b)] for a, b in reqs]
    if concurrency == 1:
        return [c.infer(model, ins) for ins in many]
    return c.infer_many(model, many, concurrency)


@pytest.mark.capability("batching")
@pytest.mark.parametrize("protocol", ["inproc", "http", "grpc"])
def test_batched_equals_unbatched(triton_harness, protocol):
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    reqs = _requests(h, model)
    before = sum(len(r.calls) for r in h.probe.records(model))
    multi_before = sum(1 for r in h.probe.records(model) for n in r.calls if n > 1)
    concurrent = _run(c, model, dt, reqs, CONCURRENCY)
    multi = sum(1 for r in h.probe.records(model) for n in r.calls if n > 1) - multi_before
    sequential = _run(c, model, dt, reqs, 1)
    for i, ((a, b), got, alone) in enumerate(zip(reqs, concurrent, sequential, strict=True)):
        want0, want1 = _add_sub(dt, a, b)
        assert_same(got["OUTPUT0"], want0, f"request {i} OUTPUT0 (concurrent)")
        assert_same(got["OUTPUT1"], want1, f"request {i} OUTPUT1 (concurrent)")
        assert_same(got["OUTPUT0"], alone["OUTPUT0"], f"request {i}: batched != unbatched")
    after = sum(len(r.calls) for r in h.probe.records(model))
    assert after > before, "no execute call was seen"
    assert multi > 0, (f"{N_REQUESTS} concurrent requests never reached execute together: the "
                       "dynamic batcher formed no batch (is dynamic_batching in the config?)")


@pytest.mark.capability("multiple_instances")
def test_instances_never_execute_concurrently(triton_harness):
    """Hammer the two-instance add_sub model; the core-side probe sees at most one execute per
    instance at a time, each instance always on the same thread, as many instances as configured."""
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = h.client("inproc")
    reqs = _requests(h, model) * 2
    results = _run(c, model, dt, reqs, 24)
    assert len(results) == len(reqs)
    recs = [r for r in h.probe.records(model) if not r.closed]
    assert recs, "no instance of the add_sub model was seen"
    assert not h.probe.violations, "; ".join(h.probe.violations)
    for r in recs:
        assert r.max_active <= 1, f"instance {r.name}: {r.max_active} concurrent execute calls"
        assert len(r.threads) <= 1, f"instance {r.name}: execute ran on {len(r.threads)} threads"
    cfg = h.server.model_config(model)
    want = sum(g.count for g in cfg.instance_group)
    assert len(recs) == want, f"{len(recs)} instances created, the config asks {want}"


@pytest.mark.capability("concurrency")
def test_probe_saw_no_violation_anywhere(triton_harness):
    """Across every model the session used so far: never two executes at once on one instance,
    never an execute after close."""
    assert not triton_harness.probe.violations, "; ".join(triton_harness.probe.violations)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_requests_without_a_batcher(triton_harness, protocol):
    """Many requests at once to a model with no batcher, through a front end: the way the
    core runs them under load (for a backend whose started executes offer a descriptor, the
    event loop reads their results) gives every request its own answer, never two executes
    at once beyond what the instance allows, and every started execute is finished."""
    h = triton_harness
    dt = h.caps.dtypes[0]
    model = h.ready_model(IDENTITY, dt)
    c = client_for(h, protocol)
    shape = (1, 16) if h.caps.batching else (16,)
    many = [[("INPUT0", dt, small_sample(dt, shape, 900 + i))] for i in range(64)]
    got = c.infer_many(model, many, 16)
    for i, (ins, out) in enumerate(zip(many, got, strict=True)):
        assert_same(out["OUTPUT0"], ins[0][2], f"request {i}")
    assert not h.probe.violations, "; ".join(h.probe.violations)
    assert all(r.active == 0 for r in h.probe.records(model)), \
        "an execute was started and its result never taken"
