"""The entry point, the BackendSpec, and discovery by the core's registry."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
from onnx_backend_helpers import add_sub_model, instance, request, run

from triton_backend_onnx import plugin
from triton_backend_onnx.backend import OnnxBackend
from triton_core.abi import ModelContext
from triton_core.config import ModelConfig
from triton_core.models.registry import BackendRegistry

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_declares_the_entry_point_and_dependencies():
    data = tomllib.loads(PYPROJECT.read_text())
    project = data["project"]
    assert project["name"] == "triton-backend-onnx"
    assert project["entry-points"]["triton_core"] == {"onnx": "triton_backend_onnx.plugin"}
    deps = " ".join(project["dependencies"])
    assert "triton-core>=0.1,<0.2" in deps and "onnxruntime>=1.17" in deps and "numpy" in deps


def test_spec():
    (spec,) = list(plugin.triton_backends())
    assert spec.name == "onnxruntime"
    assert spec.platforms == ("onnxruntime_onnx",)
    assert spec.default_model_filename == "model.onnx"
    assert spec.abi == (1, 4)  # gather.run_each_on_failure, BackendSpec.gpu
    assert spec.available() is None
    import onnxruntime

    # KIND_AUTO goes to the GPU only with onnxruntime's CUDA build
    assert spec.gpu == ("CUDAExecutionProvider" in onnxruntime.get_available_providers())


def test_available_reports_why_onnxruntime_cannot_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    reason = plugin.check_runtime()
    assert reason is not None and "onnxruntime" in reason


def test_registry_discovers_and_serves(repo):
    reg = BackendRegistry({"onnxruntime": {"default-max-batch-size": "2"}})
    reg.register_plugin(plugin, "onnx", "triton-backend-onnx", "0.1.0")
    entry = reg.entry("onnxruntime")
    assert entry is not None and entry.status == "available", entry
    assert reg.for_platform("onnxruntime_onnx") is entry
    assert reg.for_model_files({"model.onnx"}) is entry
    backend = reg.backend("onnxruntime")
    assert isinstance(backend, OnnxBackend)
    path = add_sub_model(repo)
    model = backend.load_model(ModelContext("addsub", 1, path, ModelConfig()))
    assert model.config.max_batch_size == 2
    a = np.ones((2, 16), np.int32)
    (resp,), _ = run(instance(model), request("addsub", INPUT0=a, INPUT1=a))
    np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), a * 2)
    reg.close()
