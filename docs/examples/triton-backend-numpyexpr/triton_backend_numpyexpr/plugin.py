"""The entry point (group ``triton_core``): the backend and its conformance spec."""

from __future__ import annotations

import triton_core

BACKEND_NAME = "numpyexpr"


def _factory(ctx: triton_core.BackendContext):
    from .backend import ExprBackend

    return ExprBackend(ctx)


@triton_core.hookimpl
def triton_backends():
    yield triton_core.BackendSpec(
        name=BACKEND_NAME,
        factory=_factory,
        default_model_filename="model.expr",
        abi=(1, 0),
        description="numpy expressions from config.pbtxt (example backend)",
    )


@triton_core.hookimpl
def triton_conformance(backend_name: str):
    if backend_name != BACKEND_NAME:
        return None
    from .conformance import conformance_spec

    return conformance_spec()
