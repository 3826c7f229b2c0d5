"""Bad requests: clear INVALID_ARG naming what is wrong, and the model serves the next request."""

from __future__ import annotations

import numpy as np
import pytest

from triton_core.conformance_spec import ADD_SUB

from ..data import assert_same, small_sample
from ..harness import InferError
from .conftest_helpers import PROTOCOLS, client_for
from .test_inference import _add_sub

pytestmark = pytest.mark.capability("errors")


def _other_dtype(dt: str) -> str:
    return "INT32" if dt != "INT32" else "FP32"


def _case(h, kind: str, dt: str):
    """(inputs, outputs, a word the message must contain)."""
    b = h.caps.batching
    shape = (1, 16) if b else (16,)
    a, c = small_sample(dt, shape, 1), small_sample(dt, shape, 2)
    if kind == "wrong_dtype":
        odt = _other_dtype(dt)
        bad = small_sample(odt, shape, 3)
        return [("INPUT0", odt, bad), ("INPUT1", dt, c)], None, "INPUT0"
    if kind == "wrong_shape":
        s = (1, 15) if b else (15,)
        return [("INPUT0", dt, small_sample(dt, s, 4)), ("INPUT1", dt, small_sample(dt, s, 5))], None, \
            "INPUT"
    if kind == "missing_input":
        return [("INPUT0", dt, a)], None, "INPUT1"
    if kind == "unknown_input":
        return [("INPUT0", dt, a), ("INPUT1", dt, c), ("NOPE", dt, a)], None, "NOPE"
    if kind == "unknown_output":
        return [("INPUT0", dt, a), ("INPUT1", dt, c)], ["NOPE"], "NOPE"
    if kind == "batch_too_large":
        if not b:
            pytest.skip("the backend declares no batching")
        n = h.caps.max_batch_size + 1
        return [("INPUT0", dt, small_sample(dt, (n, 16), 6)), ("INPUT1", dt, small_sample(dt, (n, 16), 7))], \
            None, "batch"
    raise ValueError(kind)


KINDS = ["wrong_dtype", "wrong_shape", "missing_input", "unknown_input", "unknown_output",
         "batch_too_large"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_request(triton_harness, protocol, kind):
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    inputs, outputs, word = _case(h, kind, dt)
    with pytest.raises(InferError) as ei:
        c.infer(model, inputs, outputs=outputs)
    assert ei.value.code == "INVALID_ARG", str(ei.value)
    assert word.lower() in ei.value.message.lower(), f"the message should mention '{word}': {ei.value}"
    # the model serves the next request
    shape = (1, 16) if h.caps.batching else (16,)
    a, b = small_sample(dt, shape, 8), small_sample(dt, shape, 9)
    out = c.infer(model, [("INPUT0", dt, a), ("INPUT1", dt, b)])
    assert_same(out["OUTPUT0"], _add_sub(dt, a, b)[0])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_and_version(triton_harness, protocol):
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    shape = (1, 16) if h.caps.batching else (16,)
    a = small_sample(dt, shape, 1)
    ins = [("INPUT0", dt, a), ("INPUT1", dt, a)]
    with pytest.raises(InferError) as ei:
        c.infer("conformance_no_such_model", ins)
    assert ei.value.code in ("NOT_FOUND", "UNAVAILABLE", "INVALID_ARG"), str(ei.value)
    with pytest.raises(InferError):
        c.infer(model, ins, version=99)
    assert np.asarray(c.infer(model, ins)["OUTPUT0"]).shape == shape
