"""One small CNN, three model files: a Core ML ML program, an ONNX graph, and the torch module.

The weights are drawn once from a fixed seed (numpy) and written into every format,
so the three runtimes compute the same network:

    x [N, 3, 64, 64] FP32
    -> conv 3x3 (3 -> 32) + relu -> conv 3x3 stride 2 (32 -> 64) + relu
    -> conv 3x3 stride 2 (64 -> 128) + relu -> global average pool -> linear (128 -> 10)
    -> y [N, 10]

``build(repo)`` writes a triton-core model repository:

    cnn_coreml_all/       coreml backend, compute_units ALL
    cnn_coreml_cpu/       coreml backend, compute_units CPU_ONLY
    cnn_coreml_worker/    coreml backend, compute_units ALL, predictions in a worker process
    cnn_onnx_coreml/      onnxruntime backend with the CoreML execution provider (MLProgram, ALL)
    cnn_onnx_cpu/         onnxruntime backend on the CPU only

Each model batches along the first dimension (1..MAX_BATCH), max_batch_size MAX_BATCH.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 64
MAX_BATCH = 8
LAYERS = ((3, 32, 1), (32, 64, 2), (64, 128, 2))  # (in, out, stride), 3x3 kernels, padding 1
CLASSES = 10


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}
    for i, (cin, cout, _) in enumerate(LAYERS):
        w[f"conv{i}.w"] = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(np.float32)
        w[f"conv{i}.b"] = np.zeros(cout, np.float32)
    w["fc.w"] = (rng.standard_normal((CLASSES, LAYERS[-1][1])) * 0.1).astype(np.float32)
    w["fc.b"] = np.zeros(CLASSES, np.float32)
    return w


def save_coreml(path: Path, w: dict[str, np.ndarray]) -> None:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(input_specs=[mb.TensorSpec(shape=(get_new_symbol(), 3, SIZE, SIZE))],
                opset_version=ct.target.macOS13)
    def prog(x):
        for i, (_, _, stride) in enumerate(LAYERS):
            x = mb.conv(x=x, weight=w[f"conv{i}.w"], bias=w[f"conv{i}.b"], strides=[stride, stride],
                        pad_type="custom", pad=[1, 1, 1, 1])
            x = mb.relu(x=x)
        x = mb.reduce_mean(x=x, axes=[2, 3])
        return mb.linear(x=x, weight=w["fc.w"], bias=w["fc.b"], name="y")

    shape = (ct.RangeDim(1, MAX_BATCH), 3, SIZE, SIZE)
    model = ct.convert(prog, inputs=[ct.TensorType(name="x", shape=shape)],
                       minimum_deployment_target=ct.target.macOS13, skip_model_load=True)
    model.save(str(path))


def save_onnx(path: Path, w: dict[str, np.ndarray]) -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cur = [], [], "x"
    for i, (_, _, stride) in enumerate(LAYERS):
        inits += [numpy_helper.from_array(w[f"conv{i}.w"], f"conv{i}.w"),
                  numpy_helper.from_array(w[f"conv{i}.b"], f"conv{i}.b")]
        nodes += [helper.make_node("Conv", [cur, f"conv{i}.w", f"conv{i}.b"], [f"c{i}"],
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        cur = f"r{i}"
    inits += [numpy_helper.from_array(w["fc.w"].T.copy(), "fc.wt"),
              numpy_helper.from_array(w["fc.b"], "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [cur], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.wt", "fc.b"], ["y"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CLASSES])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def torch_module(w: dict[str, np.ndarray]):
    import torch
    import torch.nn.functional as F  # noqa: N812

    class CNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.ParameterDict({k.replace(".", "_"): torch.nn.Parameter(torch.from_numpy(v))
                                             for k, v in w.items()})

        def forward(self, x):
            for i, (_, _, stride) in enumerate(LAYERS):
                x = F.relu(F.conv2d(x, self.p[f"conv{i}_w"], self.p[f"conv{i}_b"], stride=stride, padding=1))
            return F.linear(x.mean(dim=(2, 3)), self.p["fc_w"], self.p["fc_b"])

    return CNN().eval()


def reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The network in numpy (float64), to check every runtime's answer."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = x.astype(np.float64)
    for i, (_, _, stride) in enumerate(LAYERS):
        p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(p, (3, 3), axis=(2, 3))[:, :, ::stride, ::stride]
        conv = np.einsum("nchwij,ocij->nohw", win, w[f"conv{i}.w"])
        a = np.maximum(conv + w[f"conv{i}.b"][:, None, None], 0)
    return a.mean(axis=(2, 3)) @ w["fc.w"].T + w["fc.b"]


def _config(backend: str, extra: str) -> str:
    return (f'backend: "{backend}"\nmax_batch_size: {MAX_BATCH}\n'
            f'input [{{ name: "x" data_type: TYPE_FP32 dims: [3, {SIZE}, {SIZE}] }}]\n'
            f'output [{{ name: "y" data_type: TYPE_FP32 dims: [{CLASSES}] }}]\n'
            "dynamic_batching { }\n" + extra)


def build(repo: Path, seed: int = 0) -> dict[str, np.ndarray]:
    w = weights(seed)
    coreml = {"cnn_coreml_all": ("ALL", False), "cnn_coreml_cpu": ("CPU_ONLY", False),
              "cnn_coreml_worker": ("ALL", True)}
    for name, (units, worker) in coreml.items():
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        params = f'parameters {{ key: "compute_units" value {{ string_value: "{units}" }} }}\n'
        if worker:
            params += 'parameters { key: "worker_process" value { string_value: "true" } }\n'
        (repo / name / "config.pbtxt").write_text(_config("coreml", params))
        save_coreml(repo / name / "1" / "model.mlpackage", w)
    onnx = {
        "cnn_onnx_coreml": ('optimization { execution_accelerators { cpu_execution_accelerator [{ '
                            'name: "coreml" parameters { key: "ModelFormat" value: "MLProgram" } '
                            'parameters { key: "MLComputeUnits" value: "ALL" } }] } }\n'
                            'parameters { key: "strict_execution_providers" '
                            'value { string_value: "true" } }\n'),
        "cnn_onnx_cpu": "",
    }
    for name, extra in onnx.items():
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(_config("onnxruntime", extra))
        save_onnx(repo / name / "1" / "model.onnx", w)
    return w
