"""The conformance models of the metal backend (``triton conformance metal``, macOS):
an element-wise copy kernel per datatype and an add/sub kernel."""

from __future__ import annotations

from pathlib import Path

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

from .engine import engine_unavailable
from .model import BACKEND_NAME, DEFAULT_MODEL_FILENAME

MAX_BATCH_SIZE = 8

# Triton type -> MSL element type
MSL_TYPES = {
    "BOOL": "bool",
    "UINT8": "uchar",
    "UINT16": "ushort",
    "UINT32": "uint",
    "UINT64": "ulong",
    "INT8": "char",
    "INT16": "short",
    "INT32": "int",
    "INT64": "long",
    "FP16": "half",
    "FP32": "float",
    "BF16": "bfloat",
}

CAPABILITIES = Capabilities(
    dtypes=tuple(MSL_TYPES),
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    variable_dims=True,
    bytes_any=False,
    decoupled=False,
    sequence=False,
    gpu=False,
    platforms=("darwin",),
    notes={
        "FP64": "Metal Shading Language has no double",
        "bytes": "kernels take numeric buffers only",
        "decoupled": "a kernel answers each request once",
        "sequence": "a kernel keeps no state between calls",
        "gpu": "instances run on the Mac's GPU whatever their kind; the suite's KIND_GPU test is not claimed",
    },
)

HEADER = "#include <metal_stdlib>\nusing namespace metal;\n\n"


def identity_source(msl_type: str) -> str:
    return HEADER + (
        f"kernel void identity(const device {msl_type}* in [[buffer(0)]],\n"
        f"                     device {msl_type}* out [[buffer(1)]],\n"
        "                     uint i [[thread_position_in_grid]]) {\n"
        "    out[i] = in[i];\n"
        "}\n"
    )


def add_sub_source(msl_type: str) -> str:
    return HEADER + (
        f"kernel void add_sub(const device {msl_type}* a [[buffer(0)]],\n"
        f"                    const device {msl_type}* b [[buffer(1)]],\n"
        f"                    device {msl_type}* sum [[buffer(2)]],\n"
        f"                    device {msl_type}* diff [[buffer(3)]],\n"
        "                    uint i [[thread_position_in_grid]]) {\n"
        "    sum[i] = a[i] + b[i];\n"
        "    diff[i] = a[i] - b[i];\n"
        "}\n"
    )


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        folder = write_config(
            repo, name, role_config(role, backend=BACKEND_NAME, max_batch_size=MAX_BATCH_SIZE)
        )
        msl_type = MSL_TYPES[DataType(role.datatype).value]
        if role.role == IDENTITY:
            source = identity_source(msl_type)
        elif role.role == ADD_SUB:
            source = add_sub_source(msl_type)
        else:  # pragma: no cover - not claimed
            raise ValueError(f"no {role.role} model for metal")
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "1" / DEFAULT_MODEL_FILENAME).write_text(source)
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(
        backend=BACKEND_NAME,
        capabilities=CAPABILITIES,
        build_models=build_models,
        gpu_available=engine_unavailable,
    )
