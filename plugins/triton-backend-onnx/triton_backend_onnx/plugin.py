"""The triton_core entry point: declares the onnxruntime backend."""

from __future__ import annotations

import importlib.metadata as md

from triton_core.abi import BackendContext, BackendSpec, hookimpl

from .names import BACKEND_NAME, DEFAULT_MODEL_FILENAME, PLATFORM

# onnxruntime's distributions; the CUDA build is onnxruntime-gpu
_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-silicon", "onnxruntime-directml",
                  "onnxruntime-openvino", "onnxruntime-qnn")


def _installed() -> tuple[str, str] | None:
    """(distribution, version) of the onnxruntime build installed, from its metadata: the
    server registers the backend without importing onnxruntime (tens of MB) until a model
    needs it."""
    for dist in _DISTRIBUTIONS:
        try:
            return dist, md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def check_runtime() -> str | None:
    """None when onnxruntime imports, else why it cannot."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return f"onnxruntime cannot be imported: {type(e).__name__}: {e}"
    return None


def _factory(ctx: BackendContext):
    from .backend import OnnxBackend

    return OnnxBackend(ctx)


@hookimpl
def triton_backends():
    found = _installed()
    version = found[1] if found else "not installed"
    # KIND_AUTO means KIND_GPU only with the build that has the CUDA provider
    # (onnxruntime-gpu: pip install triton-backend-onnx[gpu])
    cuda = bool(found and found[0] == "onnxruntime-gpu")
    yield BackendSpec(
        name=BACKEND_NAME,
        platforms=(PLATFORM,),
        default_model_filename=DEFAULT_MODEL_FILENAME,
        abi=(1, 4),  # gather.run_each_on_failure, BackendSpec.gpu
        factory=_factory,
        available=check_runtime,
        description=f"ONNX Runtime {version}" + (" (CUDA)" if cuda else ""),
        gpu=cuda,
    )


@hookimpl
def triton_conformance(backend_name: str):
    """The conformance suite's view of this backend (capabilities and models)."""
    if backend_name != BACKEND_NAME:
        return None
    from .conformance import conformance_spec

    return conformance_spec()
