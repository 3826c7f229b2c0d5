"""The conformance models of the coreml backend (``triton conformance coreml``).

ML programs built with coremltools' MIL builder into the suite's temporary repository
(any OS can build them); the configs are the reference ones of
triton_core.conformance_spec. The suite runs only where Core ML runs (macOS): the
models compute in FP32 (``compute_precision`` FLOAT32) and the reference configs'
KIND_CPU instances run CPU_ONLY, so results are exact.
"""

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

from .model import BACKEND_NAME

MAX_BATCH_SIZE = 8
# Upper bound of the identity model's variable dimension (Core ML ranges may be unbounded,
# but a bounded range lets Core ML plan memory).
MAX_ELEMENTS = 4096

CAPABILITIES = Capabilities(
    dtypes=("FP32", "FP16", "INT32"),
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    variable_dims=True,
    bytes_any=False,
    decoupled=False,
    sequence=False,
    gpu=False,
    platforms=("darwin",),
    notes={
        "dtypes": "Core ML multi-arrays hold FP32, FP16, FP64, INT32 and INT8; ML programs take "
                  "FP32, FP16 and INT32 at their inputs and outputs",
        "bytes_any": "Core ML strings are scalar UTF-8 features, not tensors",
        "decoupled": "a Core ML prediction answers each request exactly once",
        "sequence": "Core ML states (MLState) are FP16 tensors on macOS 15+; the accumulate role "
                    "needs INT32 state",
        "gpu": "the conformance run uses CPU_ONLY for exact results",
    },
)

_DTYPES = {"FP32": "fp32", "FP16": "fp16", "INT32": "int32"}
_NUMPY = {"FP32": "float32", "FP16": "float16", "INT32": "int32"}


def _save(program, inputs, folder: Path) -> None:
    import coremltools as ct
    import numpy as np

    outputs = [ct.TensorType(name=n, dtype=getattr(np, _NUMPY[dt])) for n, dt in program.outputs_spec]
    mlmodel = ct.convert(program.prog, inputs=inputs, outputs=outputs,
                         minimum_deployment_target=ct.target.macOS13,
                         compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    folder.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(folder / "model.mlpackage"))


class _Program:
    def __init__(self, prog, outputs_spec: list[tuple[str, str]]) -> None:
        self.prog = prog
        self.outputs_spec = outputs_spec


def identity_model(folder: Path, dtype: str, max_batch_size: int) -> None:
    import coremltools as ct
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol, types

    t = getattr(types, _DTYPES[dtype])
    shape = (get_new_symbol(), get_new_symbol()) if max_batch_size else (get_new_symbol(),)

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=t)], opset_version=ct.target.macOS13)
    def prog(INPUT0):  # noqa: N803 - the role's tensor names
        # a copy, no arithmetic: exact for every value (INT32 through a float unit would not be)
        return mb.identity(x=INPUT0, name="OUTPUT0")

    dims = ((ct.RangeDim(1, max_batch_size), ct.RangeDim(1, MAX_ELEMENTS)) if max_batch_size
            else (ct.RangeDim(1, MAX_ELEMENTS),))
    inputs = [ct.TensorType(name="INPUT0", shape=dims, dtype=getattr(np, _NUMPY[dtype]))]
    _save(_Program(prog, [("OUTPUT0", dtype)]), inputs, folder)


def add_sub_model(folder: Path, dtype: str, max_batch_size: int) -> None:
    import coremltools as ct
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol, types

    t = getattr(types, _DTYPES[dtype])
    shape = (get_new_symbol(), 16) if max_batch_size else (16,)

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=t), mb.TensorSpec(shape=shape, dtype=t)],
                opset_version=ct.target.macOS13)
    def prog(INPUT0, INPUT1):  # noqa: N803 - the role's tensor names
        return mb.add(x=INPUT0, y=INPUT1, name="OUTPUT0"), mb.sub(x=INPUT0, y=INPUT1, name="OUTPUT1")

    dims = (ct.RangeDim(1, max_batch_size), 16) if max_batch_size else (16,)
    np_type = getattr(np, _NUMPY[dtype])
    inputs = [ct.TensorType(name=n, shape=dims, dtype=np_type) for n in ("INPUT0", "INPUT1")]
    _save(_Program(prog, [("OUTPUT0", dtype), ("OUTPUT1", dtype)]), inputs, folder)


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        folder = write_config(repo, name, role_config(role, backend=BACKEND_NAME,
                                                      max_batch_size=MAX_BATCH_SIZE))
        if role.role == IDENTITY:
            identity_model(folder / "1", role.datatype, MAX_BATCH_SIZE)
        elif role.role == ADD_SUB:
            add_sub_model(folder / "1", role.datatype, MAX_BATCH_SIZE)
        else:  # pragma: no cover - not claimed
            raise ValueError(f"no {role.role} model for coreml")
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend=BACKEND_NAME, capabilities=CAPABILITIES, build_models=build_models)
