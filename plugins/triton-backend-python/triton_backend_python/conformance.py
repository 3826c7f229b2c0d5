"""What the python backend claims to the conformance suite, and its conformance models."""

from __future__ import annotations

from pathlib import Path

from triton_core.conformance_spec import (
    ADD_SUB,
    ALL_DTYPES,
    DECOUPLED_REPEAT,
    IDENTITY,
    Capabilities,
    ConformanceSpec,
    ModelRole,
    role_config,
    standard_roles,
    write_config,
)

MAX_BATCH_SIZE = 8

CAPABILITIES = Capabilities(
    # numpy has no bfloat16: Triton's python backend hands BF16 over DLPack only
    dtypes=tuple(d for d in ALL_DTYPES if d != "BF16"),
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    bytes_any=True,
    decoupled=True,
    sequence=False,
    gpu=False,
    notes={"BF16": "numpy has no bfloat16 type (pb_utils tensors are numpy arrays)",
           "sequence": "the conformance models keep no state; implicit state is not wired "
                       "into the python backend yet",
           "gpu": "tensors are CPU numpy arrays"},
)

# Model code of each role, written as the user would (pb_utils, TritonPythonModel).
_HEAD = "import numpy as np\n\nimport triton_python_backend_utils as pb_utils\n\n\n"

IDENTITY_PY = _HEAD + '''class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
'''

ADD_SUB_PY = _HEAD + '''class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a + b),
                                                   pb_utils.Tensor("OUTPUT1", a - b)]))
        return out
'''

REPEAT_PY = _HEAD + '''class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            sender = r.get_response_sender()
            values = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            for i, v in enumerate(values):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", np.array([v], dtype=np.int32)),
                    pb_utils.Tensor("IDX", np.array([i], dtype=np.uint32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

_CODE = {IDENTITY: IDENTITY_PY, ADD_SUB: ADD_SUB_PY, DECOUPLED_REPEAT: REPEAT_PY}


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        batch = MAX_BATCH_SIZE if role.role in (IDENTITY, ADD_SUB) else 0
        folder = write_config(repo, name, role_config(role, backend="python", max_batch_size=batch))
        (folder / "1").mkdir(exist_ok=True)
        (folder / "1" / "model.py").write_text(_CODE[role.role])
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend="python", capabilities=CAPABILITIES, build_models=build_models)
