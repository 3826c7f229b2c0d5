"""Helpers for the pytorch backend tests: models scripted or traced by the tests, loaded
through the backend object, and requests run through an instance."""

from __future__ import annotations

from pathlib import Path

import torch

from triton_backend_torch.backend import TorchBackend
from triton_core.abi import BackendContext, ExecuteTimer, InstanceContext, ModelContext
from triton_core.config import ModelConfig, parse_pbtxt
from triton_core.request import InferenceRequest, RequestedOutput
from triton_core.tensor import Tensor


def save_script(repo: Path, name: str, module: torch.nn.Module, pbtxt: str | None = None,
                filename: str = "model.pt") -> Path:
    """``repo/name/1/<filename>`` holding ``torch.jit.script(module)``, and its config."""
    return _save(repo, name, torch.jit.script(module), pbtxt, filename)


def save_traced(repo: Path, name: str, module: torch.nn.Module, example: tuple,
                pbtxt: str | None = None) -> Path:
    return _save(repo, name, torch.jit.trace(module, example), pbtxt, "model.pt")


def _save(repo: Path, name: str, scripted, pbtxt: str | None, filename: str) -> Path:
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    scripted.save(str(folder / "1" / filename))
    if pbtxt is not None:
        (folder / "config.pbtxt").write_text(pbtxt)
    return folder


def save_exported(repo: Path, name: str, module: torch.nn.Module, args: tuple, kwargs: dict | None = None,
                  dynamic_shapes=None, pbtxt: str | None = None) -> Path:
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    ep = torch.export.export(module, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes)
    torch.export.save(ep, str(folder / "1" / "model.pt2"))
    if pbtxt is not None:
        (folder / "config.pbtxt").write_text(pbtxt)
    return folder


def load(model_path: Path, pbtxt: str | None = None, auto_complete: bool = True,
         backend_config: dict | None = None):
    if pbtxt is None and (model_path / "config.pbtxt").is_file():
        pbtxt = (model_path / "config.pbtxt").read_text()
    cfg = parse_pbtxt(pbtxt) if pbtxt is not None else ModelConfig()
    backend = TorchBackend(BackendContext(name="pytorch", config=backend_config or {}))
    ctx = ModelContext(name=model_path.name, version=1, model_path=model_path, config=cfg,
                       auto_complete=auto_complete)
    return backend.load_model(ctx)


def instance(model, kind: str = "KIND_CPU", device_id: int = 0):
    return model.create_instance(InstanceContext(name=f"{model.name}_0", kind=kind, device_id=device_id))


def request(model_name: str = "m", outputs: list[str] | None = None, **arrays) -> InferenceRequest:
    inputs = {k: Tensor.from_numpy(k, v) for k, v in arrays.items()}
    outs = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest(model_name=model_name, inputs=inputs, outputs=outs)


def tensor_request(model_name: str = "m", **tensors: Tensor) -> InferenceRequest:
    return InferenceRequest(model_name=model_name, inputs=dict(tensors))


def run(inst, *requests):
    timer = ExecuteTimer()
    return inst.execute(list(requests), timer), timer
