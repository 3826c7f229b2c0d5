"""The conformance models of the onnxruntime backend (``triton conformance onnxruntime``).

Built with the onnx helper API into the suite's temporary repository; the
configs are the reference ones of triton_core.conformance_spec. ``onnx`` is
needed only here (extra ``conformance``), never to serve.
"""

from __future__ import annotations

from pathlib import Path

from triton_core.conformance_spec import (
    ADD_SUB,
    IDENTITY,
    SEQUENCE_ACCUMULATE,
    Capabilities,
    ConformanceSpec,
    ModelRole,
    role_config,
    standard_roles,
    write_config,
)

from .model import BACKEND_NAME

MAX_BATCH_SIZE = 8
OPSET = 13

CAPABILITIES = Capabilities(
    dtypes=("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
            "FP16", "FP32", "FP64", "BF16", "BYTES"),
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    variable_dims=True,
    bytes_any=False,
    decoupled=False,
    sequence=True,  # through implicit state (sequence_batching.state)
    gpu=False,
    notes={
        "bytes_any": "ONNX Runtime's Python API holds string tensors as UTF-8 text: "
                     "non-UTF-8 BYTES are refused with INVALID_ARG",
        "decoupled": "an ONNX graph answers each request exactly once",
        "gpu": "the conformance run uses the CPU execution provider",
    },
)

_ELEM = {
    "BOOL": "BOOL", "UINT8": "UINT8", "UINT16": "UINT16", "UINT32": "UINT32", "UINT64": "UINT64",
    "INT8": "INT8", "INT16": "INT16", "INT32": "INT32", "INT64": "INT64", "FP16": "FLOAT16",
    "FP32": "FLOAT", "FP64": "DOUBLE", "BF16": "BFLOAT16", "BYTES": "STRING",
}


def _save(path: Path, nodes: list, inputs: list, outputs: list) -> None:
    from onnx import helper

    graph = helper.make_graph(nodes, path.parent.parent.name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


# Implicit state of the accumulator: the running sum, zero after START.
_STATE = ('  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 '
          'dims: [1] initial_state { name: "zero" data_type: TYPE_INT32 dims: [1] zero_data: true } '
          '}]\n')


def build_models(repo: Path) -> dict[str, ModelRole]:
    from onnx import TensorProto, helper

    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        text = role_config(role, backend=BACKEND_NAME, max_batch_size=MAX_BATCH_SIZE)
        if role.role == SEQUENCE_ACCUMULATE:
            text = text.replace("sequence_batching {\n", "sequence_batching {\n" + _STATE, 1)
        folder = write_config(repo, name, text)
        model_file = folder / "1" / "model.onnx"
        if role.role == SEQUENCE_ACCUMULATE:
            i32 = TensorProto.INT32
            shape = ["batch", 1]
            # OUTPUT0 = STATE_IN * (1 - START) + INPUT0; the new state is OUTPUT0
            one = helper.make_tensor("one", i32, [1], [1])
            _save(model_file,
                  [helper.make_node("Constant", [], ["ONE"], value=one),
                   helper.make_node("Sub", ["ONE", "START"], ["KEEP"]),
                   helper.make_node("Mul", ["STATE_IN", "KEEP"], ["KEPT"]),
                   helper.make_node("Add", ["KEPT", "INPUT0"], ["OUTPUT0"]),
                   helper.make_node("Identity", ["OUTPUT0"], ["STATE_OUT"])],
                  [helper.make_tensor_value_info(n, i32, shape)
                   for n in ("INPUT0", "START", "READY", "STATE_IN")],
                  [helper.make_tensor_value_info(n, i32, shape) for n in ("OUTPUT0", "STATE_OUT")])
            continue
        elem = getattr(TensorProto, _ELEM[role.datatype])
        if role.role == IDENTITY:
            shape = ["batch", "n"]
            _save(model_file, [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
                  [helper.make_tensor_value_info("INPUT0", elem, shape)],
                  [helper.make_tensor_value_info("OUTPUT0", elem, shape)])
        elif role.role == ADD_SUB:
            shape = ["batch", 16]
            _save(model_file,
                  [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
                   helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
                  [helper.make_tensor_value_info(n, elem, shape) for n in ("INPUT0", "INPUT1")],
                  [helper.make_tensor_value_info(n, elem, shape) for n in ("OUTPUT0", "OUTPUT1")])
        else:  # pragma: no cover - not claimed
            raise ValueError(f"no {role.role} model for onnxruntime")
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend=BACKEND_NAME, capabilities=CAPABILITIES, build_models=build_models)
