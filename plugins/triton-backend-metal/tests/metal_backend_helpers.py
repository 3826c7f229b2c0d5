"""Helpers for the metal plugin's tests: loading models without a server, requests."""

from __future__ import annotations

from pathlib import Path

from triton_core.abi import BackendContext, ExecuteTimer, InstanceContext, ModelContext
from triton_core.config import ModelConfig, parse_pbtxt
from triton_core.request import InferenceRequest, RequestedOutput
from triton_core.tensor import Tensor

KERNELS = Path(__file__).resolve().parent / "kernels"


def load_mlx(
    model_path: Path, pbtxt: str | None = None, auto_complete: bool = True, backend_config: dict | None = None
):
    from triton_backend_metal.mlx.backend import MlxBackend

    cfg = parse_pbtxt(pbtxt) if pbtxt is not None else ModelConfig()
    backend = MlxBackend(BackendContext(name="mlx", config=backend_config or {}))
    ctx = ModelContext(
        name=model_path.name, version=1, model_path=model_path, config=cfg, auto_complete=auto_complete
    )
    return backend.load_model(ctx)


def load_metal(model_path: Path, pbtxt: str, engine=None):
    from triton_backend_metal.metal.backend import MetalBackend

    backend = MetalBackend(BackendContext(name="metal"), engine=engine)
    ctx = ModelContext(name=model_path.name, version=1, model_path=model_path, config=parse_pbtxt(pbtxt))
    return backend.load_model(ctx)


def instance(model, kind: str = "KIND_CPU", device_id: int = 0):
    return model.create_instance(InstanceContext(name=f"{model.name}_0", kind=kind, device_id=device_id))


def request(
    model_name: str = "m", outputs: list[str] | None = None, datatypes: dict | None = None, **arrays
) -> InferenceRequest:
    inputs = {k: Tensor.from_numpy(k, v, (datatypes or {}).get(k)) for k, v in arrays.items()}
    outs = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest(model_name=model_name, inputs=inputs, outputs=outs)


def run(inst, *requests) -> list:
    return inst.execute(list(requests), ExecuteTimer())
