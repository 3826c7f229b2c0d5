"""The entry point, the BackendSpec, discovery, and what a server and `triton check` do with
Core ML models where Core ML cannot run."""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from triton_backend_coreml import plugin
from triton_backend_coreml.backend import CoreMLBackend
from triton_backend_coreml.runtime import NEEDS_MACOS, unavailable_reason
from triton_core import checker
from triton_core.errors import ErrorCode, TritonError
from triton_core.models.registry import BackendRegistry
from triton_core.testing import make_server

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
LINUX_ONLY = pytest.mark.skipif(sys.platform == "darwin", reason="checks the behaviour where Core ML is "
                                "missing; on macOS Core ML runs (test_coreml_predict.py)")


def test_pyproject_declares_the_entry_point_and_dependencies():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["name"] == "triton-backend-coreml"
    assert project["entry-points"]["triton_core"] == {"coreml": "triton_backend_coreml.plugin"}
    deps = " ".join(project["dependencies"])
    assert "triton-core>=0.1,<0.2" in deps and "coremltools>=8.1" in deps and "pillow" in deps


def test_spec():
    (spec,) = list(plugin.triton_backends())
    assert spec.name == "coreml" and spec.platforms == ("coreml",)
    assert spec.default_model_filename == "model.mlpackage"
    assert spec.abi == (1, 0)
    assert spec.available() == unavailable_reason()


@LINUX_ONLY
def test_unavailable_off_macos_with_the_reason():
    reason = unavailable_reason()
    assert reason is not None and reason.startswith(NEEDS_MACOS) and sys.platform in reason
    reg = BackendRegistry()
    reg.register_plugin(plugin, "coreml", "triton-backend-coreml", "0.1.0")
    entry = reg.entry("coreml")
    assert entry.resolve().status == "unavailable" and entry.reason == reason
    assert reg.for_platform("coreml") is entry
    assert reg.for_model_files({"model.mlpackage"}) is entry
    with pytest.raises(TritonError) as e:
        reg.backend("coreml")
    assert e.value.code is ErrorCode.UNAVAILABLE and NEEDS_MACOS in e.value.message
    assert isinstance(reg.backend("coreml", allow_unavailable=True), CoreMLBackend)


def _repo(tmp_path: Path, models: dict[str, Path], *names: str) -> Path:
    repo = tmp_path / "repo"
    for n in names:
        shutil.copytree(models[n], repo / n)
        (repo / n / "config.pbtxt").write_text('backend: "coreml"\n')
    return repo


@LINUX_ONLY
def test_loading_a_coreml_model_off_macos_fails_clearly(tmp_path, models, cache, monkeypatch):
    monkeypatch.setenv("TRITON_COREML_CACHE", str(cache))
    server = make_server(_repo(tmp_path, models, "relu_range"), plugin, model_control_mode="explicit",
                         exit_on_error=False)
    server.start()
    try:
        with pytest.raises(TritonError) as e:
            server.load_model("relu_range")
        assert e.value.code is ErrorCode.UNAVAILABLE
        assert NEEDS_MACOS in e.value.message
        assert not server.model_ready("relu_range")
    finally:
        server.stop()


@LINUX_ONLY
def test_model_create_instance_refuses_off_macos(models, cache):
    from coreml_backend_helpers import load

    from triton_core.abi import InstanceContext

    m = load(models["relu_range"], cache=cache)
    with pytest.raises(TritonError, match=f"unable to load model 'relu_range': {NEEDS_MACOS}"):
        m.create_instance(InstanceContext("relu_range_0", "KIND_CPU"))


def test_triton_check_validates_and_auto_completes_where_core_ml_cannot_run(tmp_path, models, cache,
                                                                          monkeypatch):
    monkeypatch.setenv("TRITON_COREML_CACHE", str(cache))

    class Registry(BackendRegistry):
        def discover(self) -> None:
            self.register_plugin(plugin, "coreml", "triton-backend-coreml", "0.1.0")

    monkeypatch.setattr(checker, "BackendRegistry", Registry)
    repo = _repo(tmp_path, models, "relu_range", "classifier")
    bad = repo / "bad_dims"
    shutil.copytree(models["add_fixed"], bad)
    (bad / "config.pbtxt").write_text('backend: "coreml"\ninput [{ name: "a" data_type: TYPE_INT32 '
                                      'dims: [9] }]\n'
                                      'output [{ name: "s" data_type: TYPE_INT32 dims: [2, 3] }]')
    errors, lines = checker.check_repository([repo])
    assert errors == 1, lines
    text = "\n".join(lines)
    assert "ok   classifier (backend coreml, versions 1" in text
    assert "ok   relu_range (backend coreml, versions 1" in text
    assert ("FAIL bad_dims: unable to load model 'bad_dims', configuration expects dims [9] for input "
            "'a', model provides [2,3]") in text
    if sys.platform != "darwin":
        assert f"cannot serve here: {NEEDS_MACOS}" in text


def test_conformance_models_match_their_reference_configs(tmp_path, cache, monkeypatch):
    """The suite itself runs on macOS; here: its models build and pass `triton check`."""
    monkeypatch.setenv("TRITON_COREML_CACHE", str(cache))
    spec = plugin.triton_conformance("coreml")
    assert plugin.triton_conformance("onnxruntime") is None
    assert spec.backend == "coreml" and spec.capabilities.platforms == ("darwin",)
    assert spec.capabilities.problems() == []
    roles = spec.build_models(tmp_path)
    assert set(roles) == {"identity_fp32", "identity_fp16", "identity_int32", "add_sub"}

    class Registry(BackendRegistry):
        def discover(self) -> None:
            self.register_plugin(plugin, "coreml", "triton-backend-coreml", "0.1.0")

    monkeypatch.setattr(checker, "BackendRegistry", Registry)
    errors, lines = checker.check_repository([tmp_path])
    assert errors == 0, lines
