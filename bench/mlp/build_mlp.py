"""Build the compute-bound benchmark model: an MLP of three 1024x1024 FP32 layers.

    python bench/mlp/build_mlp.py [--out bench/models_mlp]

writes <out>/mlp/config.pbtxt (onnxruntime, max_batch_size 64, dynamic
batching) and <out>/mlp/1/model.onnx (deterministic weights, seed 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WIDTH = 1024
LAYERS = 3
CONFIG = """name: "mlp"
backend: "onnxruntime"
max_batch_size: 64
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1024 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1024 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
dynamic_batching { max_queue_delay_microseconds: 0 }
"""


def build(out: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "INPUT"
    for i in range(LAYERS):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        b = (rng.standard_normal(WIDTH) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]))
        last = i == LAYERS - 1
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], ["OUTPUT" if last else f"add{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"add{i}"], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", WIDTH])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    d = out / "mlp"
    (d / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "1" / "model.onnx"))
    (d / "config.pbtxt").write_text(CONFIG)
    return d


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench/models_mlp"))
    print(build(ap.parse_args().out))
