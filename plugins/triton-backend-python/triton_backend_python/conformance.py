"""What the python backend claims to the conformance suite, and its conformance models."""

from __future__ import annotations

from pathlib import Path

from triton_core.conformance_spec import (
    ADD_SUB,
    ALL_DTYPES,
    DECOUPLED_REPEAT,
    IDENTITY,
    SEQUENCE_ACCUMULATE,
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
    sequence=True,            # the model keeps its own state per correlation id
    gpu=False,
    notes={"BF16": "numpy has no bfloat16 type (pb_utils tensors are numpy arrays)",
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

ACCUMULATE_PY = _HEAD + '''class TritonPythonModel:
    """Sums INPUT0 over a sequence: state kept by the model per correlation id."""

    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        out = []
        for r in requests:
            cid = r.correlation_id()
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            start = pb_utils.get_input_tensor_by_name(r, "START")
            if start is not None and int(start.as_numpy().reshape(-1)[0]) == 1:
                self.sums[cid] = 0
            total = self.sums.get(cid, 0) + int(x.reshape(-1)[0])
            self.sums[cid] = total
            if r.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END:
                self.sums.pop(cid, None)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", np.full(x.shape, total, dtype=np.int32))]))
        return out
'''

_CODE = {IDENTITY: IDENTITY_PY, ADD_SUB: ADD_SUB_PY, DECOUPLED_REPEAT: REPEAT_PY,
         SEQUENCE_ACCUMULATE: ACCUMULATE_PY}


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        batch = MAX_BATCH_SIZE if role.role in (IDENTITY, ADD_SUB, SEQUENCE_ACCUMULATE) else 0
        folder = write_config(repo, name, role_config(role, backend="python", max_batch_size=batch))
        (folder / "1").mkdir(exist_ok=True)
        (folder / "1" / "model.py").write_text(_CODE[role.role])
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend="python", capabilities=CAPABILITIES, build_models=build_models)
