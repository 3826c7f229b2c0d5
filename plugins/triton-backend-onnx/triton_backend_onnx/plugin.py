"""The triton_core entry point: declares the onnxruntime backend."""

from __future__ import annotations

from triton_core.abi import BackendContext, BackendSpec, hookimpl

from .model import BACKEND_NAME, DEFAULT_MODEL_FILENAME, PLATFORM


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
    try:
        import onnxruntime

        version = onnxruntime.__version__
        # KIND_AUTO means KIND_GPU only with a build that has the CUDA provider
        # (onnxruntime-gpu: pip install triton-backend-onnx[gpu])
        cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001
        version, cuda = "not installed", False
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
