"""Helpers for the onnx backend tests: tiny ONNX models built with the onnx helper API."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from triton_backend_onnx.backend import OnnxBackend
from triton_core.abi import ExecuteTimer, InstanceContext, ModelContext
from triton_core.config import ModelConfig, parse_pbtxt
from triton_core.request import InferenceRequest, RequestedOutput
from triton_core.tensor import Tensor

OPSET = 13


def save_model(
    repo: Path,
    name: str,
    nodes: list,
    inputs: list,
    outputs: list,
    opset: int = OPSET,
    initializers: list | None = None,
) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = repo / name / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return repo / name


def vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def identity_model(repo: Path, name: str, elem: int, shape, out_shape=None) -> Path:
    return save_model(
        repo,
        name,
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        [vi("INPUT0", elem, shape)],
        [vi("OUTPUT0", elem, out_shape if out_shape is not None else shape)],
    )


def add_sub_model(repo: Path, name: str = "addsub", shape=("batch", 16), elem=TensorProto.INT32) -> Path:
    return save_model(
        repo,
        name,
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [vi("INPUT0", elem, list(shape)), vi("INPUT1", elem, list(shape))],
        [vi("OUTPUT0", elem, list(shape)), vi("OUTPUT1", elem, list(shape))],
    )


def load(
    model_path: Path,
    pbtxt: str | None = None,
    auto_complete: bool = True,
    backend_config: dict | None = None,
):
    from triton_core.abi import BackendContext

    cfg = parse_pbtxt(pbtxt) if pbtxt is not None else ModelConfig()
    backend = OnnxBackend(BackendContext(name="onnxruntime", config=backend_config or {}))
    ctx = ModelContext(
        name=model_path.name, version=1, model_path=model_path, config=cfg, auto_complete=auto_complete
    )
    return backend.load_model(ctx)


def instance(model, kind: str = "KIND_CPU", device_id: int = 0):
    return model.create_instance(InstanceContext(name=f"{model.name}_0", kind=kind, device_id=device_id))


def request(model_name: str = "m", outputs: list[str] | None = None, **arrays) -> InferenceRequest:
    inputs = {k: Tensor.from_numpy(k, v) for k, v in arrays.items()}
    outs = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest(model_name=model_name, inputs=inputs, outputs=outs)


def run(inst, *requests) -> list:
    timer = ExecuteTimer()
    responses = inst.execute(list(requests), timer)
    return responses, timer


