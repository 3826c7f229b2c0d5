"""Lifecycle: load, ready, unload, reload with a new version, version policies, a corrupt model,
and nothing of the backend left behind after unload."""

from __future__ import annotations

import shutil
import time

import pytest

from triton_core.conformance_spec import IDENTITY, default_corrupt_model

from ..data import assert_same, sample
from ..harness import InferError, Resources

pytestmark = pytest.mark.capability("lifecycle")


def _identity(h) -> tuple[str, str]:
    dtype = "FP32" if "FP32" in h.caps.dtypes else h.caps.dtypes[0]
    return h.ready_model(IDENTITY, dtype), dtype


def _roundtrip(h, model: str, dtype: str, version: int | None = None, seed: int = 0) -> None:
    shape = (2, 3) if h.caps.batching else (3,)
    x = sample(dtype, shape, seed=seed, binary=h.caps.bytes_any)
    out = h.client("inproc").infer(model, [("INPUT0", dtype, x)], version=version)
    assert_same(out["OUTPUT0"], x, f"{model} version {version}")


def _ready_versions(h, name: str) -> list[int]:
    return sorted(int(r["version"]) for r in h.server.repository_index()
                  if r["name"] == name and r.get("state") == "READY")


def _set_policy(folder, policy: str) -> None:
    cfg = folder / "config.pbtxt"
    text = "\n".join(line for line in cfg.read_text().splitlines() if not line.startswith("version_policy"))
    cfg.write_text(text + ("\n" + policy if policy else "") + "\n")


def _add_versions(folder, versions) -> None:
    for v in versions:
        if not (folder / str(v)).exists():
            shutil.copytree(folder / "1", folder / str(v))


def test_load_ready_unload_reload(triton_harness):
    h = triton_harness
    src, dtype = _identity(h)
    name = "conf_lifecycle"
    h.copy_model(src, name)
    s = h.server
    assert not s.model_ready(name)
    s.load_model(name)
    assert s.model_ready(name) and s.model_ready(name, 1)
    _roundtrip(h, name, dtype)
    s.unload_model(name)
    assert not s.model_ready(name)
    with pytest.raises(InferError) as ei:
        _roundtrip(h, name, dtype)
    assert ei.value.code in ("UNAVAILABLE", "NOT_FOUND"), str(ei.value)
    s.load_model(name)
    _roundtrip(h, name, dtype, seed=1)
    s.unload_model(name)


def test_reload_new_version(triton_harness):
    """Adding version 2 and loading again serves version 2 only (default policy: latest 1)."""
    h = triton_harness
    src, dtype = _identity(h)
    name = "conf_newversion"
    folder = h.copy_model(src, name)
    s = h.server
    s.load_model(name)
    assert _ready_versions(h, name) == [1]
    _add_versions(folder, [2])
    s.load_model(name)
    assert _ready_versions(h, name) == [2]
    assert not s.model_ready(name, 1)
    _roundtrip(h, name, dtype, version=2)
    _roundtrip(h, name, dtype)
    assert s.model_metadata(name)["versions"] == ["2"]
    s.unload_model(name)


@pytest.mark.parametrize("policy,want", [
    ("", [3]),
    ("version_policy: { latest: { num_versions: 2 } }", [2, 3]),
    ("version_policy: { all: {} }", [1, 2, 3]),
    ("version_policy: { specific: { versions: [1, 3] } }", [1, 3]),
], ids=["default", "latest2", "all", "specific"])
def test_version_policy(triton_harness, policy, want):
    h = triton_harness
    src, dtype = _identity(h)
    name = "conf_policy"
    folder = h.copy_model(src, name)
    _add_versions(folder, [2, 3])
    _set_policy(folder, policy)
    s = h.server
    s.load_model(name)
    try:
        assert _ready_versions(h, name) == want
        for v in want:
            _roundtrip(h, name, dtype, version=v, seed=v)
        for v in {1, 2, 3} - set(want):
            assert not s.model_ready(name, v)
            with pytest.raises(InferError):
                _roundtrip(h, name, dtype, version=v)
    finally:
        s.unload_model(name)


def test_corrupt_model_fails_clearly(triton_harness):
    """A model file your runtime cannot read must fail the load, with an error naming the model,
    while the other models serve. The file is damaged by ConformanceSpec.corrupt_model (by
    default every file of the version folders is overwritten with bytes no format accepts)."""
    h = triton_harness
    src, dtype = _identity(h)
    name = "conf_corrupt"
    folder = h.copy_model(src, name)
    (h.spec.corrupt_model or default_corrupt_model)(folder)
    s = h.server
    try:
        s.load_model(name)
    except Exception as e:  # noqa: BLE001 - any error type; its words are checked below
        msg = getattr(e, "message", str(e))
    else:
        s.unload_model(name)
        pytest.fail("a model file your runtime cannot read must fail the load, but the damaged "
                    "model loaded: check the model file in Model.__init__ (or load_model) and raise "
                    "TritonError naming the model; if garbage bytes are valid in your format, give "
                    "ConformanceSpec.corrupt_model a damage that is not")
    assert name in msg, f"the load error should name the model ('{name}'): {msg!r}"
    assert len(msg) > len(name) + 10, f"the load error should say what is wrong: {msg!r}"
    assert not s.model_ready(name)
    rows = [r for r in s.repository_index() if r["name"] == name]
    assert rows and all(r.get("state") != "READY" for r in rows)
    assert any(r.get("reason") for r in rows), f"the index gives no reason: {rows}"
    _roundtrip(h, src, dtype)
    assert s.is_live()
    shutil.rmtree(folder)


def test_no_leaks_after_unload(triton_harness):
    """Load, infer, unload: no threads, file descriptors, processes or shared memory of the
    model remain. (Process-wide backend state created by a first model may stay.)"""
    h = triton_harness
    src, dtype = _identity(h)
    name = "conf_leaks"
    h.copy_model(src, name)
    s = h.server
    s.load_model(name)  # warm-up: the Backend object and runtime globals
    _roundtrip(h, name, dtype)
    s.unload_model(name)
    base = Resources.now()
    for i in range(2):
        s.load_model(name)
        for j in range(3):
            _roundtrip(h, name, dtype, seed=i * 10 + j)
        s.unload_model(name)
    deadline = time.monotonic() + 5
    while True:
        leaks = Resources.now().leaks_since(base)
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not leaks, "after unload: " + "; ".join(leaks)
