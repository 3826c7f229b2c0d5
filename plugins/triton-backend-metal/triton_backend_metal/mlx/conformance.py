"""The conformance models of the mlx backend (``triton conformance mlx``): each role's
function exported with ``export_model`` next to the reference config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from triton_core.conformance_spec import (
    ADD_SUB,
    IDENTITY,
    Capabilities,
    ConformanceSpec,
    ModelRole,
    role_config,
    standard_roles,
    write_config,
)
from triton_core.dtypes import DataType

from . import runtime
from .export import export_model
from .model import BACKEND_NAME, DEFAULT_MODEL_FILENAME

MAX_BATCH_SIZE = 8
_ALL = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
)


def _gpu_default() -> bool:
    import mlx.core as mx

    return runtime.run(lambda: mx.default_device() == mx.gpu)


def capabilities() -> Capabilities:
    on_gpu = _gpu_default()
    notes = {
        "bytes": "MLX arrays hold numbers only: BYTES has no MLX type",
        "decoupled": "an exported function returns its outputs once",
        "sequence": "an exported function keeps no state between calls",
        "gpu": "the suite's models run on MLX's default device (KIND_CPU instances)",
    }
    dtypes = _ALL
    if on_gpu:
        dtypes = tuple(d for d in _ALL if d != "FP64")
        notes["FP64"] = "MLX runs float64 on the CPU only; the default device here is the GPU"
    return Capabilities(
        dtypes=dtypes,
        batching=True,
        max_batch_size=MAX_BATCH_SIZE,
        variable_dims=True,
        bytes_any=False,
        decoupled=False,
        sequence=False,
        gpu=False,
        notes=notes,
    )


def _identity(x):
    return x


def _add_sub(a, b):
    return a + b, a - b


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(capabilities())
    for name, role in roles.items():
        folder = write_config(
            repo, name, role_config(role, backend=BACKEND_NAME, max_batch_size=MAX_BATCH_SIZE)
        )
        path = folder / "1" / DEFAULT_MODEL_FILENAME
        dt = DataType(role.datatype)
        types = {"INPUT0": dt.value, "INPUT1": dt.value}
        if role.role == IDENTITY:
            export_model(
                path,
                _identity,
                inputs={"INPUT0": np.zeros((1, 4), dt.numpy)},
                outputs=["OUTPUT0"],
                datatypes=types,
                variable_axes=(0, 1),
            )
        elif role.role == ADD_SUB:
            x = np.zeros((1, 16), dt.numpy)
            export_model(
                path,
                _add_sub,
                inputs={"INPUT0": x, "INPUT1": x},
                outputs=["OUTPUT0", "OUTPUT1"],
                datatypes=types,
            )
        else:  # pragma: no cover - not claimed
            raise ValueError(f"no {role.role} model for mlx")
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend=BACKEND_NAME, capabilities=capabilities(), build_models=build_models)
