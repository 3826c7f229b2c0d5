"""The entry point, the BackendSpec, discovery by the core's registry, the backend config,
and device placement (CUDA and MPS where present)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_backend_helpers import instance, load, request, run, save_script

from triton_backend_torch import plugin
from triton_backend_torch.backend import TorchBackend
from triton_backend_torch.devices import Placement, gpu_reason, placement
from triton_core.abi import BackendContext, ModelContext
from triton_core.config import parse_pbtxt
from triton_core.errors import TritonError
from triton_core.models.registry import BackendRegistry

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

IO = """
max_batch_size: 4
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]
"""


class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_pyproject_declares_the_entry_point_and_a_torch_range():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["name"] == "triton-backend-torch"
    assert project["entry-points"]["triton_core"] == {"pytorch": "triton_backend_torch.plugin"}
    deps = " ".join(project["dependencies"])
    assert "triton-core>=0.1,<0.2" in deps and "torch>=2.6,<3" in deps
    assert torch.__version__.split("+")[0] == "2.13.0" or torch.__version__ >= "2.6"


def test_spec():
    (spec,) = list(plugin.triton_backends())
    assert spec.name == "pytorch"
    assert spec.platforms == ("pytorch_libtorch", "libtorch", "torch_aoti", "torch_export")
    assert spec.default_model_filename == "model.pt"
    assert spec.abi == (1, 5)  # gather.run_each_on_failure, device_tensors
    assert spec.device_tensors
    assert spec.available() is None
    assert spec.description == f"PyTorch {plugin.torch_version()}"


@pytest.mark.parametrize("version, gpu", [
    ("2.13.0+cpu", False), ("2.13.0+cpu.cxx11.abi", False), ("2.13.0", True),
    ("2.13.0+cu130", True), (None, False)])
def test_kind_auto_means_the_gpu_only_with_a_cuda_build(version, gpu, monkeypatch):
    assert plugin.cuda_build(version) is gpu
    monkeypatch.setattr(plugin, "torch_version", lambda: version)
    (spec,) = list(plugin.triton_backends())
    assert spec.gpu is gpu


def test_available_says_when_torch_is_missing(monkeypatch):
    monkeypatch.setattr(plugin.importlib.util, "find_spec", lambda name: None)
    assert plugin.check_runtime() == "torch is not installed (pip install torch)"


def test_registry_discovers_and_serves(repo):
    reg = BackendRegistry({"pytorch": {"default-max-batch-size": "2"}})
    reg.register_plugin(plugin, "pytorch", "triton-backend-torch", "0.1.0")
    entry = reg.entry("pytorch")
    assert entry is not None and entry.status == "available", entry
    for platform in ("pytorch_libtorch", "libtorch", "torch_aoti"):
        assert reg.for_platform(platform) is entry
    assert reg.for_model_files({"model.pt"}) is entry
    backend = reg.backend("pytorch")
    assert isinstance(backend, TorchBackend) and backend.default_max_batch_size == 2
    folder = save_script(repo, "double", Double())
    model = backend.load_model(ModelContext("double", 1, folder, parse_pbtxt(IO)))
    (resp,), _ = run(instance(model), request("double", x=np.ones((1, 2), np.float32)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [[2, 2]])
    reg.close()


def test_backend_config(monkeypatch, caplog):
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")  # restored (or removed) afterwards
    with caplog.at_level(logging.WARNING, "triton_backend_torch"):
        TorchBackend(BackendContext("pytorch", {"mps-fallback": "true", "shm-size": "1"}))
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    assert "backend config 'pytorch,shm-size' is not read" in caplog.text
    assert "torch was already imported" in caplog.text  # the tests imported it: said plainly
    with pytest.raises(TritonError) as e:
        TorchBackend(BackendContext("pytorch", {"default-max-batch-size": "lots"}))
    assert "'default-max-batch-size' must be an integer" in e.value.message


def test_mps_fallback_is_set_before_torch_is_first_imported():
    """Discovery does not import torch, so the backend config can still set torch's environment."""
    code = (
        "import os, sys\n"
        "os.environ.pop('PYTORCH_ENABLE_MPS_FALLBACK', None)\n"
        "from triton_backend_torch import plugin\n"
        "list(plugin.triton_backends()); assert plugin.check_runtime() is None\n"
        "assert 'torch' not in sys.modules, 'discovery imported torch'\n"
        "from triton_core.abi import BackendContext\n"
        "plugin._factory(BackendContext('pytorch', {'mps-fallback': 'true'}))\n"
        "assert 'torch' in sys.modules and os.environ['PYTORCH_ENABLE_MPS_FALLBACK'] == '1'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cpu_placement(repo):
    inst = instance(load(save_script(repo, "double", Double(), IO)))
    assert inst.placement.device == torch.device("cpu")


def test_mps_placement_refuses_fp64_and_serialises_work(repo):
    """Up to the MPS call: what a Mac instance does before torch touches the device."""
    m = load(save_script(repo, "d64", Double(), IO.replace("TYPE_FP32", "TYPE_FP64")))
    mps = Placement(torch.device("mps"), "KIND_GPU")
    with pytest.raises(TritonError) as e:
        m.check_device(mps)
    assert "MPS has no float64" in e.value.message and "x, y" in e.value.message
    assert mps.serialize() is mps.serialize()  # one process-wide lock
    assert not Placement(torch.device("cpu"), "KIND_CPU").is_mps


@pytest.mark.skipif(sys.platform != "darwin",
                    reason="MPS is Apple's Metal GPU backend of torch: it runs on macOS only "
                           "(the macOS arm64 workflow runs this test)")
def test_mps_instance_runs_on_the_mac_gpu(repo):
    reason = gpu_reason()
    if reason is not None:
        pytest.skip(f"no MPS device here: {reason}")
    inst = instance(load(save_script(repo, "double", Double(), IO)), kind="KIND_GPU")
    assert inst.placement.device == torch.device("mps")
    (resp,), _ = run(inst, request("double", x=np.array([[1, 2]], np.float32)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [[2, 4]])


@pytest.mark.skipif(sys.platform == "darwin" or not torch.cuda.is_available(),
                    reason="needs a CUDA device (run on the GPU machine)")
def test_cuda_instance_runs_on_its_device(repo):
    inst = instance(load(save_script(repo, "double", Double(), IO)), kind="KIND_GPU", device_id=0)
    assert inst.placement.device == torch.device("cuda", 0) and inst.stream is not None
    (resp,), _ = run(inst, request("double", x=np.array([[1, 2]], np.float32)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [[2, 4]])
    with pytest.raises(TritonError):
        placement("KIND_GPU", torch.cuda.device_count(), "double")
