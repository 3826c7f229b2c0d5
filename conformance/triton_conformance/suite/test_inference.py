"""Inference over the in-process API, HTTP and gRPC: every datatype, variable dims, the largest
batch, BYTES edge cases, add_sub. Expected values come from numpy."""

from __future__ import annotations

import numpy as np
import pytest

from triton_core.conformance_spec import ADD_SUB, IDENTITY

from ..data import ALL_DTYPES, add_sub, assert_same, sample, small_sample
from ..harness import InferError
from .conftest_helpers import PROTOCOLS, batch_shapes, client_for

pytestmark = pytest.mark.capability("inference")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_identity(triton_harness, protocol, dtype):
    """INPUT0 comes back unchanged, for every shape: one row, several rows, the largest batch."""
    h = triton_harness
    model = h.ready_model(IDENTITY, dtype)
    c = client_for(h, protocol)
    binary = h.caps.bytes_any
    for i, shape in enumerate(batch_shapes(h, 5)):
        x = sample(dtype, shape, seed=i, binary=binary)
        out = c.infer(model, [("INPUT0", dtype, x)])
        assert set(out) == {"OUTPUT0"}, f"outputs {sorted(out)}"
        assert_same(out["OUTPUT0"], x, f"{model} {protocol} shape {list(shape)}")


@pytest.mark.capability("variable_dims")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_variable_dims(triton_harness, protocol):
    """dims [-1]: consecutive requests with different sizes, each answered with its own shape."""
    h = triton_harness
    dtype = "FP32" if "FP32" in h.caps.dtypes else h.caps.dtypes[0]
    model = h.ready_model(IDENTITY, dtype)
    c = client_for(h, protocol)
    for n in (1, 17, 2, 256, 3):
        shape = (2, n) if h.caps.batching else (n,)
        x = sample(dtype, shape, seed=n, binary=h.caps.bytes_any)
        assert_same(c.infer(model, [("INPUT0", dtype, x)])["OUTPUT0"], x, f"size {n}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_add_sub(triton_harness, protocol):
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    shape = (2, 16) if h.caps.batching else (16,)
    a, b = small_sample(dt, shape, 1), small_sample(dt, shape, 2)
    out = c.infer(model, [("INPUT0", dt, a), ("INPUT1", dt, b)])
    want0, want1 = _add_sub(dt, a, b)
    assert_same(out["OUTPUT0"], want0, "OUTPUT0")
    assert_same(out["OUTPUT1"], want1, "OUTPUT1")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requested_output_only(triton_harness, protocol):
    """Asking for OUTPUT1 only returns OUTPUT1 only."""
    h = triton_harness
    model = h.ready_model(ADD_SUB)
    dt = h.roles[model].datatype
    c = client_for(h, protocol)
    shape = (1, 16) if h.caps.batching else (16,)
    a, b = small_sample(dt, shape, 3), small_sample(dt, shape, 4)
    out = c.infer(model, [("INPUT0", dt, a), ("INPUT1", dt, b)], outputs=["OUTPUT1"])
    assert set(out) == {"OUTPUT1"}
    assert_same(out["OUTPUT1"], _add_sub(dt, a, b)[1], "OUTPUT1")


def _add_sub(dt, a, b):
    if dt == "BF16":
        from ..data import bf16_to_fp32, fp32_to_bf16

        s, d = add_sub(bf16_to_fp32(a), bf16_to_fp32(b))
        return fp32_to_bf16(s), fp32_to_bf16(d)
    return add_sub(a, b)


@pytest.mark.capability("bytes")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_empty_strings(triton_harness, protocol):
    """BYTES tensors whose elements are all empty, and a mix of empty and non-empty."""
    h = triton_harness
    if "BYTES" not in h.caps.dtypes:
        pytest.skip(f"backend '{h.backend}' does not declare datatype BYTES")
    model = h.ready_model(IDENTITY, "BYTES")
    c = client_for(h, protocol)
    shape = (1, 4) if h.caps.batching else (4,)
    for elems in ([b"", b"", b"", b""], [b"", b"a", b"", "\u00e9".encode()]):
        x = np.array(elems, dtype=object).reshape(shape)
        assert_same(c.infer(model, [("INPUT0", "BYTES", x)])["OUTPUT0"], x, f"{elems}")


@pytest.mark.capability("bytes_any")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_non_utf8(triton_harness, protocol):
    """BYTES elements are bytes, not text: NUL, 0xff and every byte value come back unchanged."""
    h = triton_harness
    if "BYTES" not in h.caps.dtypes:
        pytest.skip(f"backend '{h.backend}' does not declare datatype BYTES")
    model = h.ready_model(IDENTITY, "BYTES")
    c = client_for(h, protocol)
    elems = [b"\x00", b"\xff\xfe", bytes(range(256)), b"\xc3\x28"]
    shape = (1, 4) if h.caps.batching else (4,)
    x = np.array(elems, dtype=object).reshape(shape)
    assert_same(c.infer(model, [("INPUT0", "BYTES", x)])["OUTPUT0"], x)


@pytest.mark.capability("bytes")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_non_utf8_refused_cleanly(triton_harness, protocol):
    """A backend that holds only UTF-8 text refuses other bytes with INVALID_ARG and serves on."""
    h = triton_harness
    if "BYTES" not in h.caps.dtypes:
        pytest.skip(f"backend '{h.backend}' does not declare datatype BYTES")
    if h.caps.bytes_any:
        pytest.skip("the backend takes any bytes (test_bytes_non_utf8 checks them)")
    model = h.ready_model(IDENTITY, "BYTES")
    c = client_for(h, protocol)
    shape = (1, 2) if h.caps.batching else (2,)
    bad = np.array([b"ok", b"\xff\xfe"], dtype=object).reshape(shape)
    with pytest.raises(InferError) as ei:
        c.infer(model, [("INPUT0", "BYTES", bad)])
    assert ei.value.code == "INVALID_ARG", str(ei.value)
    assert "INPUT0" in ei.value.message, f"the error should name the input: {ei.value.message}"
    good = np.array([b"ok", b"fine"], dtype=object).reshape(shape)
    assert_same(c.infer(model, [("INPUT0", "BYTES", good)])["OUTPUT0"], good)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_metadata_and_config(triton_harness, protocol):
    """Metadata and config of an identity model agree with what the backend declared."""
    h = triton_harness
    dtype = h.caps.dtypes[0]
    model = h.ready_model(IDENTITY, dtype)
    c = client_for(h, protocol)
    if protocol == "inproc":
        md = h.server.model_metadata(model)
        cfg = h.server.model_config_json(model)
    elif protocol == "http":
        md = c.client.get_model_metadata(model)
        cfg = c.client.get_model_config(model)
    else:
        md = c.client.get_model_metadata(model, as_json=True)
        cfg = c.client.get_model_config(model, as_json=True)["config"]
    assert md["name"] == model
    assert md["inputs"][0]["datatype"] == dtype
    assert cfg["name"] == model
    assert cfg.get("backend", "") == h.backend or cfg.get("platform", "") in h.entry.platforms
    assert int(cfg.get("max_batch_size", 0)) == (h.caps.max_batch_size if h.caps.batching else 0)
