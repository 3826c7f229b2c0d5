"""The triton_core entry point: the "python" backend and its custom-metrics collector."""

from __future__ import annotations

import sys
from typing import Any

from triton_core.abi import BackendContext, BackendSpec, hookimpl


def check_runtime() -> str | None:
    """None when this machine can run workers, else why not."""
    if sys.platform == "win32":
        return "the python backend needs POSIX shared memory (Linux or macOS)"
    try:
        from triton_core.memory import _native

        _native.require()
    except ImportError as e:
        return str(e)
    return None


def _factory(ctx: BackendContext):
    from .backend import PythonBackend

    return PythonBackend(ctx)


@hookimpl
def triton_backends():
    yield BackendSpec(
        name="python",
        platforms=(),
        default_model_filename="model.py",
        abi=(1, 5),  # device_tensors: KIND_GPU instances may take CUDA-region inputs
        device_tensors=True,
        factory=_factory,
        available=check_runtime,
        description=f"Python models in worker processes (python {sys.version.split()[0]})",
    )


_registered: set[int] = set()


@hookimpl
def triton_metric_families(registry: Any) -> None:
    """Add the collector reporting pb_utils.MetricFamily values (once per registry)."""
    if id(registry) in _registered:
        return
    from .metrics import PythonMetricsCollector

    registry.register(PythonMetricsCollector())
    _registered.add(id(registry))


@hookimpl
def triton_server_started(server: Any) -> None:
    """The start-up loads are done: a worker started before them that none adopted is
    not needed (prestart.py)."""
    from . import prestart

    prestart.discard()


@hookimpl
def triton_conformance(backend_name: str):
    """The conformance suite's view of this backend (see triton_core.conformance_spec)."""
    if backend_name != "python":
        return None
    from .conformance import conformance_spec

    return conformance_spec()
