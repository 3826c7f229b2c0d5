"""The suite's own machinery: xfail files, CLI arguments, data, the spec helpers, `triton conformance`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from triton_conformance.cli import build_parser, pytest_args
from triton_conformance.data import ALL_DTYPES, assert_same, bf16_to_fp32, fp32_to_bf16, sample
from triton_conformance.plugin import read_xfail_file
from triton_core.config import parse_pbtxt
from triton_core.conformance_spec import (
    Capabilities,
    ConformanceSpec,
    ModelRole,
    default_corrupt_model,
    role_config,
    standard_roles,
)


def test_xfail_file(tmp_path):
    f = tmp_path / "xfail.txt"
    f.write_text("# known\n\ntest_inference.py::test_identity[http-FP16]  # client bug\n"
                 "test_errors.py::test_bad_request[grpc-wrong_shape]\n")
    assert read_xfail_file(f) == {
        "test_inference.py::test_identity[http-FP16]": "client bug",
        "test_errors.py::test_bad_request[grpc-wrong_shape]": "listed in the expected-failures file",
    }


def test_cli_arguments():
    ns, extra = build_parser().parse_known_args(["onnxruntime", "--report", "r.json", "--xfail", "x",
                                                 "-k", "FP32"])
    args = pytest_args(ns, extra)
    assert args[args.index("--triton-backend") + 1] == "onnxruntime"
    assert args[args.index("--triton-report") + 1] == "r.json"
    assert args[args.index("--triton-xfail") + 1] == "x"
    assert args[-2:] == ["-k", "FP32"]
    assert "triton_conformance.suite" in args


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_samples_are_deterministic(dtype):
    a, b = sample(dtype, (3, 4), seed=1), sample(dtype, (3, 4), seed=1)
    assert a.shape == (3, 4)
    assert_same(a, b)


def test_bf16_round_trip():
    x = np.array([1.0, -2.5, 0.0, 96.0], dtype=np.float32)
    np.testing.assert_array_equal(bf16_to_fp32(fp32_to_bf16(x)), x)


def test_assert_same_reports_mismatch():
    with pytest.raises(AssertionError, match="element 1"):
        assert_same(np.array([b"a", b"b"], dtype=object), np.array([b"a", b"c"], dtype=object))


def test_role_configs_parse():
    caps = Capabilities(dtypes=ALL_DTYPES, decoupled=True, sequence=True)
    roles = standard_roles(caps)
    assert {r.role for r in roles.values()} == {"identity", "add_sub", "decoupled_repeat",
                                                "sequence_accumulate"}
    for role in roles.values():
        cfg = parse_pbtxt(role_config(role, backend="x", max_batch_size=8, parameters={"k": "v"}))
        assert cfg.backend == "x" and cfg.parameter("k") == "v"
    with pytest.raises(ValueError):
        ModelRole("nope")
    assert Capabilities(dtypes=("FP33",)).problems()
    assert not caps.problems()


def test_default_corrupt_model(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"good")
    (tmp_path / "config.pbtxt").write_text("keep")
    default_corrupt_model(tmp_path)
    assert (tmp_path / "1" / "model.onnx").read_bytes() != b"good"
    assert (tmp_path / "config.pbtxt").read_text() == "keep"


def test_triton_conformance_unknown_backend_fails():
    r = subprocess.run([sys.executable, "-c", "from triton_core.cli import triton_main; triton_main()",
                        "conformance", "no-such-backend", "-k", "registration"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr  # at once, before any test runs
    assert "no installed backend is named 'no-such-backend'" in r.stderr


def test_a_fixed_function_backend_declares_the_roles_it_cannot_serve():
    from triton_conformance.harness import Harness

    caps = Capabilities(dtypes=("FP32",), identity=False, add_sub=False, decoupled=True,
                        notes={"identity": "one built-in computation"})
    assert set(r.role for r in standard_roles(caps).values()) == {"decoupled_repeat"}
    h = Harness.__new__(Harness)  # the role lookup only: no server
    h.backend, h.roles = "fixed", {"repeat": ModelRole("decoupled_repeat")}
    h.spec = ConformanceSpec(backend="fixed", capabilities=caps, build_models=lambda repo: {})
    assert h.model_for("decoupled_repeat") == "repeat"
    with pytest.raises(pytest.skip.Exception, match="not declare 'identity' .*: one built-in computation"):
        h.model_for("identity", "FP32")
    with pytest.raises(pytest.skip.Exception, match="does not declare 'add_sub'"):
        h.ready_model("add_sub")


def test_instance_kind_gpu_rewrites_every_group(tmp_path):
    from triton_conformance.harness import set_instance_kind

    ns, extra = build_parser().parse_known_args(["pytorch", "--instance-kind", "KIND_GPU"])
    args = pytest_args(ns, extra)
    assert args[args.index("--triton-instance-kind") + 1] == "KIND_GPU"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pytorch", "--instance-kind", "KIND_TPU"])
    roles = standard_roles(Capabilities(dtypes=("FP32",), batching=True, max_batch_size=8))
    for name, role in roles.items():
        cfg = tmp_path / f"{name}.pbtxt"
        cfg.write_text(role_config(role, backend="b", max_batch_size=8))
        set_instance_kind(cfg, "KIND_GPU")
        groups = parse_pbtxt(cfg.read_text()).instance_group
        assert groups and all(g.kind == "KIND_GPU" for g in groups), name


def test_instance_kind_gpu_without_a_gpu_skips_with_the_reason(tmp_path):
    """`triton conformance numpyexpr --instance-kind KIND_GPU`: the example backend declares no
    gpu capability, so every test is skipped saying so."""
    pytest.importorskip("triton_backend_numpyexpr")
    r = subprocess.run([sys.executable, "-m", "triton_conformance", "numpyexpr", "--instance-kind",
                        "KIND_GPU", "-rs", "-k", "test_identity"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "--instance-kind KIND_GPU: backend 'numpyexpr' does not declare the gpu capability" \
        in r.stdout
