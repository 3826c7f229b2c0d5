"""TorchScript modules (``torch.jit.save``): loading onto a device and reading the method's
argument schema (TorchScript records argument names and kinds, not dtypes or shapes)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from triton_core.errors import TritonError

from .devices import Placement
from .inputs import ArgKind, Argument


def load(path: Path, placement: Placement, inference_mode: bool, model: str) -> torch.jit.ScriptModule:
    try:
        with torch.inference_mode(inference_mode), warnings.catch_warnings():
            # torch 2.13 marks torch.jit deprecated; Triton's model repositories still hold TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            # KIND_MODEL: where the model was saved (the model decides), as Triton
            module = torch.jit.load(str(path), map_location=placement.device)
    except Exception as e:  # noqa: BLE001 - any torch failure is a load failure
        raise TritonError.internal(f"failed to load model '{model}': {type(e).__name__}: {e}") from None
    module.eval()
    return module


def method(module: torch.jit.ScriptModule, name: str, model: str):
    fn = getattr(module, name, None)
    if fn is None or not hasattr(fn, "schema"):
        methods = sorted(module._c._method_names())  # noqa: SLF001 - the public API has no listing
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': the TorchScript module has no method '{name}' "
            f"(parameter MODULE_METHOD_NAME); its methods: {', '.join(methods)}")
    return fn


def _kind(t) -> ArgKind:
    text = str(t)
    kind = t.kind()
    if kind == "TensorType":
        return ArgKind.TENSOR
    if kind == "OptionalType" and str(t.getElementType()) == "Tensor":
        return ArgKind.TENSOR
    if kind == "ListType" and text == "List[str]":
        return ArgKind.STRINGS
    if kind == "DictType" and text == "Dict[str, Tensor]":
        return ArgKind.DICT
    if kind == "DictType":
        return ArgKind.OTHER
    return ArgKind.OTHER


def arguments(fn) -> list[Argument]:
    """The method's arguments without ``self``."""
    args = list(fn.schema.arguments)
    if args and args[0].type.kind() == "ClassType":
        args = args[1:]
    return [Argument(a.name, _kind(a.type), str(a.type), required=not a.has_default_value())
            for a in args]


def returns_dict(fn) -> bool:
    returns = list(fn.schema.returns)
    return len(returns) == 1 and returns[0].type.kind() == "DictType"
