"""The triton_core entry point: declares the coreml backend."""

from __future__ import annotations

from triton_core.abi import BackendContext, BackendSpec, hookimpl

from .model_files import DEFAULT_MODEL_FILENAME
from .names import BACKEND_NAME, PLATFORM
from .runtime import coremltools_version, unavailable_reason


def _factory(ctx: BackendContext):
    from .backend import CoreMLBackend

    return CoreMLBackend(ctx)


@hookimpl
def triton_backends():
    yield BackendSpec(
        name=BACKEND_NAME,
        platforms=(PLATFORM,),
        default_model_filename=DEFAULT_MODEL_FILENAME,
        abi=(1, 0),
        factory=_factory,
        available=unavailable_reason,
        description=f"Core ML through coremltools {coremltools_version()}",
    )


@hookimpl
def triton_conformance(backend_name: str):
    """The conformance suite's view of this backend (capabilities and models)."""
    if backend_name != BACKEND_NAME:
        return None
    from .conformance import conformance_spec

    return conformance_spec()
