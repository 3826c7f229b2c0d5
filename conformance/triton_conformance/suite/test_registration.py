"""Registration: entry point, BackendSpec, ABI, `triton backends`, the conformance spec."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from triton_core import abi
from triton_core.conformance_spec import (
    ADD_SUB,
    DECOUPLED_REPEAT,
    IDENTITY,
    SEQUENCE_ACCUMULATE,
    Capabilities,
    ConformanceSpec,
)
from triton_core.models.registry import ENV_DISABLE_AUTOLOAD, BackendRegistry
from triton_core.server import Server

from ..harness import resolved

pytestmark = pytest.mark.capability("registration")


@pytest.fixture
def h(conformance_harness):
    return conformance_harness


def _entry_or_fail(h):
    if h.entry is None:
        pytest.fail(h.skip_reason)
    return h.entry


def test_entry_point_loads(h):
    for e in h.failed_entries:
        pytest.fail(f"plugin '{e.plugin}' failed to register '{h.backend}': {e.reason}")
    e = _entry_or_fail(h)
    assert e.status in ("available", "unavailable"), f"status {e.status}: {e.reason}"
    assert e.distribution, f"backend '{h.backend}' was not registered through an installed entry point"
    assert e.version, f"distribution '{e.distribution}' has no version"


def test_backend_spec_valid(h):
    e = _entry_or_fail(h)
    spec = e.spec
    assert isinstance(spec, abi.BackendSpec)
    assert spec.name == h.backend
    assert callable(spec.factory), "BackendSpec.factory must be callable"
    assert isinstance(spec.platforms, tuple) and all(isinstance(p, str) and p for p in spec.platforms), \
        f"platforms must be a tuple of non-empty strings: {spec.platforms!r}"
    assert isinstance(spec.default_model_filename, str)
    assert spec.available is None or callable(spec.available)
    assert isinstance(spec.abi, tuple) and len(spec.abi) == 2 and all(isinstance(x, int) for x in spec.abi)


def test_abi_compatible(h):
    e = _entry_or_fail(h)
    assert abi.abi_compatible(tuple(e.spec.abi)), (
        f"backend ABI {e.spec.abi} is not compatible with the core's {abi.ABI_VERSION}")


def test_availability_consistent(h):
    e = _entry_or_fail(h)
    if e.status == "unavailable":
        assert e.reason.strip(), "an unavailable backend must say why"
        pytest.skip(f"backend unavailable here: {e.reason}")
    if e.spec.available is not None:
        assert e.spec.available() is None


def test_triton_backends_lists_it(h):
    e = _entry_or_fail(h)
    env = {k: v for k, v in __import__("os").environ.items() if k != ENV_DISABLE_AUTOLOAD}
    out = subprocess.run(
        [sys.executable, "-c", "from triton_core.cli import triton_main; triton_main()", "backends",
         "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    rows = [r for r in json.loads(out.stdout) if r["name"] == h.backend]
    assert rows, f"`triton backends` does not list '{h.backend}'"
    row = rows[0]
    assert row["status"] == e.status and row["reason"] == e.reason
    assert row["distribution"] == e.distribution
    assert tuple(row["abi"]) == tuple(e.spec.abi)


def test_unavailable_backend_reports_reason(h, tmp_path):
    """The same backend, told it cannot run here: listed as unavailable with the reason, and its
    models fail to load with that reason while the server lives on."""
    e = _entry_or_fail(h)
    reason = "conformance: simulated missing runtime"
    reg = BackendRegistry()
    fake = dataclasses.replace(e.spec, available=lambda: reason)

    class _Plugin:
        @abi.hookimpl
        def triton_backends(self):
            return [fake]

    reg.register_plugin(_Plugin(), "conformance-unavailable")
    got = resolved(reg.entry(h.backend))
    assert got is not None and got.status == "unavailable" and got.reason == reason
    if not h.roles:
        return
    name = sorted(h.roles)[0]
    import shutil

    shutil.copytree(h.repo / name, tmp_path / name)
    import os

    saved = os.environ.get(ENV_DISABLE_AUTOLOAD)
    os.environ[ENV_DISABLE_AUTOLOAD] = "1"
    try:
        srv = Server(model_repository=[tmp_path], model_control_mode="explicit", exit_on_error=False)
        srv.registry.register_plugin(_Plugin(), "conformance-unavailable")
        srv.start()
        try:
            with pytest.raises(Exception) as ei:
                srv.load_model(name)
            assert reason in str(getattr(ei.value, "message", ei.value))
            assert srv.is_live()
        finally:
            srv.stop()
    finally:
        if saved is None:
            os.environ.pop(ENV_DISABLE_AUTOLOAD, None)
        else:
            os.environ[ENV_DISABLE_AUTOLOAD] = saved


def test_conformance_spec_valid(h):
    _entry_or_fail(h)
    if h.entry.status != "available":
        pytest.skip(h.skip_reason)
    assert not h.spec_error, h.spec_error
    spec = h.spec
    assert isinstance(spec, ConformanceSpec)
    assert spec.backend == h.backend
    assert isinstance(spec.capabilities, Capabilities)
    problems = spec.capabilities.problems()
    assert not problems, "; ".join(problems)
    assert callable(spec.build_models)


def test_conformance_models_cover_capabilities(h):
    if h.skip_reason and not h.build_error:
        pytest.skip(h.skip_reason)
    assert not h.build_error, h.build_error
    caps = h.caps
    roles = list(h.roles.values())
    have = {(r.role, r.datatype) for r in roles}
    if caps.identity:
        missing = [d for d in caps.dtypes if (IDENTITY, d) not in have]
        assert not missing, f"no identity model for declared datatype(s) {missing}"
    if caps.add_sub:
        assert any(r.role == ADD_SUB for r in roles), "no add_sub model (declare add_sub=False " \
            "if the backend cannot serve one)"
    if caps.decoupled:
        assert any(r.role == DECOUPLED_REPEAT for r in roles), "decoupled declared: no decoupled_repeat model"
    if caps.sequence:
        assert any(r.role == SEQUENCE_ACCUMULATE for r in roles), \
            "sequence declared: no sequence_accumulate model"


def test_conformance_models_load(h):
    if h.skip_reason:
        pytest.skip(h.skip_reason)
    assert not h.load_errors, "; ".join(f"{n}: {m}" for n, m in sorted(h.load_errors.items()))
    for name in h.roles:
        assert h.server.model_ready(name), f"model '{name}' is not ready"


def test_conformance_models_match_roles(h):
    """Each model's metadata has the role's interface (names, datatypes, shapes, batching)."""
    if h.skip_reason:
        pytest.skip(h.skip_reason)
    caps = h.caps
    for name, role in sorted(h.roles.items()):
        if name in h.load_errors:
            continue
        md = h.server.model_metadata(name)
        ins = {t["name"]: (t["datatype"], t["shape"]) for t in md["inputs"]}
        outs = {t["name"]: (t["datatype"], t["shape"]) for t in md["outputs"]}
        cfg = h.server.model_config(name)
        if role.role == IDENTITY:
            b = [-1] if cfg.max_batch_size > 0 else []
            assert ins == {"INPUT0": (role.datatype, b + [-1])}, f"{name}: inputs {ins}"
            assert outs == {"OUTPUT0": (role.datatype, b + [-1])}, f"{name}: outputs {outs}"
            if caps.batching:
                assert cfg.max_batch_size == caps.max_batch_size, (
                    f"{name}: max_batch_size {cfg.max_batch_size}, declared {caps.max_batch_size}")
        elif role.role == ADD_SUB:
            b = [-1] if cfg.max_batch_size > 0 else []
            want = {n: (role.datatype, b + [16]) for n in ("INPUT0", "INPUT1")}
            assert ins == want, f"{name}: inputs {ins}"
            assert outs == {n: (role.datatype, b + [16]) for n in ("OUTPUT0", "OUTPUT1")}
            if caps.batching:
                assert cfg.max_batch_size == caps.max_batch_size
                assert cfg.dynamic_batching is not None, f"{name}: batching needs dynamic_batching"
        elif role.role == DECOUPLED_REPEAT:
            assert cfg.decoupled, f"{name}: not decoupled"
            assert ins == {"IN": ("INT32", [-1])}
            assert outs == {"OUT": ("INT32", [1]), "IDX": ("UINT32", [1])}
