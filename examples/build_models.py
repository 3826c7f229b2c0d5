#!/usr/bin/env python3
"""Write the example model repository (examples/model_repository) with the onnx helper API.

    python examples/build_models.py [--out DIR]

It needs the `onnx` package (`pip install onnx`; the test tools of requirements-dev.txt
include it). Serving the repository does not: the models are in the repository already.

Models (opset 13, IR version 8: onnxruntime >= 1.17 loads them):

- simple          Triton's well-known example: INPUT0, INPUT1 INT32 [16];
                  OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1; max_batch_size 8.
- identity_fp32   FP32 identity with a variable dimension and no config.pbtxt: the
                  onnxruntime backend auto-completes it (max_batch_size 4, dims [-1],
                  dynamic_batching).
- simple_string   Triton's simple_string: INPUT0, INPUT1 BYTES [16] holding decimal
                  integers; OUTPUT0 / OUTPUT1 their sum / difference as strings.
- classifier      FP32 [4] -> softmax FP32 [4] with labels.txt (classification extension).

The script is deterministic: running it again rewrites identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

try:
    import onnx
    from onnx import TensorProto, helper
except ImportError as e:
    raise SystemExit(f"examples/build_models.py writes ONNX files with the onnx package: "
                     f"pip install onnx ({e})") from None

OPSET = 13
IR_VERSION = 8
HERE = Path(__file__).resolve().parent


def _model(nodes, name, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="triton-core examples/build_models.py",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def simple() -> onnx.ModelProto:
    t = TensorProto.INT32
    return _model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [helper.make_tensor_value_info(n, t, ["batch", 16]) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, t, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")],
    )


SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"""


def identity_fp32() -> onnx.ModelProto:
    t = TensorProto.FLOAT
    return _model(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity_fp32",
        [helper.make_tensor_value_info("INPUT0", t, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", "n"])],
    )


def simple_string() -> onnx.ModelProto:
    s, i = TensorProto.STRING, TensorProto.INT32
    return _model(
        [
            helper.make_node("Cast", ["INPUT0"], ["a"], to=i),
            helper.make_node("Cast", ["INPUT1"], ["b"], to=i),
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["diff"]),
            helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=s),
            helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=s),
        ],
        "simple_string",
        [helper.make_tensor_value_info(n, s, ["batch", 16]) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, s, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")],
    )


SIMPLE_STRING_CONFIG = SIMPLE_CONFIG.replace('"simple"', '"simple_string"').replace(
    "TYPE_INT32", "TYPE_STRING"
)


def classifier() -> onnx.ModelProto:
    t = TensorProto.FLOAT
    return _model(
        [helper.make_node("Softmax", ["INPUT0"], ["OUTPUT0"], axis=-1)],
        "classifier",
        [helper.make_tensor_value_info("INPUT0", t, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", 4])],
    )


CLASSIFIER_CONFIG = """\
name: "classifier"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
    label_filename: "labels.txt"
  }
]
"""

CLASSIFIER_LABELS = "cat\ndog\nbird\nfish\n"

MODELS = {
    "simple": (simple, {"config.pbtxt": SIMPLE_CONFIG}),
    "identity_fp32": (identity_fp32, {}),
    "simple_string": (simple_string, {"config.pbtxt": SIMPLE_STRING_CONFIG}),
    "classifier": (classifier, {"config.pbtxt": CLASSIFIER_CONFIG, "labels.txt": CLASSIFIER_LABELS}),
}


def build(out: Path) -> list[Path]:
    written = []
    for name, (make, files) in MODELS.items():
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        path = version / "model.onnx"
        path.write_bytes(make().SerializeToString())
        written.append(path)
        for filename, text in files.items():
            p = out / name / filename
            p.write_text(text)
            written.append(p)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "model_repository")
    args = ap.parse_args()
    for p in build(args.out):
        print(p)


if __name__ == "__main__":
    main()
