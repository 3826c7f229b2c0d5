"""The triton_core entry point: declares the pytorch backend.

Nothing here imports torch: the backend config may have to set torch's environment
(PYTORCH_ENABLE_MPS_FALLBACK) before its first import, and discovery stays fast."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from triton_core.abi import BackendContext, BackendSpec, hookimpl

BACKEND_NAME = "pytorch"
DEFAULT_MODEL_FILENAME = "model.pt"
# TorchScript (and Triton's alias), AOTInductor packages, torch.export programs (not Triton's)
PLATFORMS = ("pytorch_libtorch", "libtorch", "torch_aoti", "torch_export")


def torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def cuda_build(version: str | None) -> bool:
    """Whether an installed torch can drive NVIDIA GPUs, told from its version without
    importing it: CPU builds carry the local label ``+cpu`` (PyPI's Linux default and the
    ``+cuXXX`` builds are CUDA builds); macOS builds reach the GPU through MPS, which NVML
    (the core's GPU discovery) does not see."""
    if version is None:
        return False
    local = version.partition("+")[2]
    return not local.startswith("cpu")


def check_runtime() -> str | None:
    """None when torch is installed, else why it cannot be used."""
    if importlib.util.find_spec("torch") is None or torch_version() is None:
        return "torch is not installed (pip install torch)"
    return None


def _factory(ctx: BackendContext):
    from .backend import TorchBackend

    return TorchBackend(ctx)


@hookimpl
def triton_backends():
    yield BackendSpec(
        name=BACKEND_NAME,
        platforms=PLATFORMS,
        default_model_filename=DEFAULT_MODEL_FILENAME,
        abi=(1, 5),  # gather.run_each_on_failure (1.4), device_tensors (1.5)
        device_tensors=True,  # KIND_GPU instances take CUDA shared-memory inputs in place
        factory=_factory,
        available=check_runtime,
        description=f"PyTorch {torch_version() or 'not installed'}",
        # KIND_AUTO becomes KIND_GPU where the core finds GPUs and this torch can use them
        gpu=cuda_build(torch_version()),
    )


@hookimpl
def triton_conformance(backend_name: str):
    """The conformance suite's view of this backend (capabilities and models)."""
    if backend_name != BACKEND_NAME:
        return None
    from .conformance import conformance_spec

    return conformance_spec()
