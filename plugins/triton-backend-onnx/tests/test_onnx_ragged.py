"""Ragged batching with ONNX models built here (Triton's qa/common/gen_qa_ragged_models.py
graphs): ragged inputs as one 1-D tensor, the batch inputs beside them, outputs split back by
batch size or by the ragged input's shape; requests run through an instance as one batch."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from onnx_backend_helpers import instance, load, request, run, save_model, vi

FP32 = TensorProto.FLOAT


def _batch_input_model(repo):
    """Each output: its input repeated once per request (a [requests, n] matrix)."""
    shape = helper.make_node("Constant", [], ["shape"], value=helper.make_tensor(
        "s", TensorProto.INT64, [2], [1, -1]))
    column = helper.make_node("Constant", [], ["column"], value=helper.make_tensor(
        "c", TensorProto.INT64, [2], [-1, 1]))
    nodes = [shape, column,
             helper.make_node("Div", ["BATCH_AND_SIZE_INPUT", "BATCH_AND_SIZE_INPUT"], ["ones"]),
             helper.make_node("Reshape", ["ones", "column"], ["expander"])]
    for name in ("RAGGED", "BATCH_AND_SIZE", "BATCH"):
        nodes += [helper.make_node("Reshape", [f"{name}_INPUT", "shape"], [f"{name}_row"]),
                  helper.make_node("MatMul", ["expander", f"{name}_row"], [f"{name}_OUTPUT"])]
    return save_model(repo, "batch_input", nodes,
                      [vi(f"{n}_INPUT", FP32, ["n"]) for n in ("RAGGED", "BATCH_AND_SIZE", "BATCH")],
                      [vi(f"{n}_OUTPUT", FP32, ["r", "n"]) for n in ("RAGGED", "BATCH_AND_SIZE", "BATCH")])


BATCH_INPUT_CONFIG = """
max_batch_size: 8
input [{ name: "RAGGED_INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }]
output [{ name: "RAGGED_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "BATCH_AND_SIZE_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "BATCH_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] }]
batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "BATCH_AND_SIZE_INPUT" data_type: TYPE_FP32
               source_input: "RAGGED_INPUT" },
             { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "BATCH_INPUT"
               data_type: TYPE_FP32 source_input: "RAGGED_INPUT" }]
dynamic_batching { }
"""


def test_batch_inputs_as_tritons_qa_model_sees_them(tmp_path):
    inst = instance(load(_batch_input_model(tmp_path), BATCH_INPUT_CONFIG))
    lengths = [2, 4, 1, 3]  # Triton's L0_batch_input: each request [1, n] filled with n
    requests = [request("batch_input", RAGGED_INPUT=np.full((1, n), n, np.float32)) for n in lengths]
    responses, _ = run(inst, *requests)
    for r in responses:
        assert r.error is None
        out = {t.name: t.as_numpy() for t in r.outputs}
        assert out["RAGGED_OUTPUT"].tolist() == [[2, 2, 4, 4, 4, 4, 1, 3, 3, 3]]
        assert out["BATCH_AND_SIZE_OUTPUT"].tolist() == [[2, 4, 1, 3]]
        assert out["BATCH_OUTPUT"].tolist() == [[0, 2, 6, 7, 10]]


def test_batch_output_split_by_the_ragged_input_shape(tmp_path):
    path = save_model(tmp_path, "ragged_io", [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
                      [vi("INPUT0", FP32, ["n"])], [vi("OUTPUT0", FP32, ["n"])])
    inst = instance(load(path, """
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "OUTPUT0" source_input: "INPUT0" }]
dynamic_batching { }
"""))
    arrays = [np.full((1, n), n, np.float32) for n in (2, 4, 1, 3)]  # Triton's test_ragged_output
    responses, _ = run(inst, *[request("ragged_io", INPUT0=a) for a in arrays])
    for r, a in zip(responses, arrays, strict=True):
        np.testing.assert_array_equal(r.outputs[0].as_numpy(), a)
