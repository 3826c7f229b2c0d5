"""triton-core: a Triton-compatible inference server in Python.

The names below are imported when first used (PEP 562): ``import triton_core.launcher``
must not import the server (numpy, pydantic, protobuf) before a plugin's prestart ran.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the submodule that defines it
_EXPORTS = {
    "ABI_VERSION": "abi",
    "Backend": "abi",
    "BackendContext": "abi",
    "BackendSpec": "abi",
    "ExecuteTimer": "abi",
    "Instance": "abi",
    "InstanceContext": "abi",
    "Model": "abi",
    "ModelContext": "abi",
    "hookimpl": "abi",
    "hookspec": "abi",
    "DataType": "dtypes",
    "ErrorCode": "errors",
    "TritonError": "errors",
    "InferenceRequest": "request",
    "InferenceResponse": "request",
    "RequestedOutput": "request",
    "Server": "server",
    "Tensor": "tensor",
}

__all__ = [
    "ABI_VERSION",
    "Backend",
    "BackendContext",
    "BackendSpec",
    "DataType",
    "ErrorCode",
    "ExecuteTimer",
    "InferenceRequest",
    "InferenceResponse",
    "Instance",
    "InstanceContext",
    "Model",
    "ModelContext",
    "RequestedOutput",
    "Server",
    "Tensor",
    "TritonError",
    "__version__",
    "hookimpl",
    "hookspec",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'triton_core' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .abi import (
        ABI_VERSION,
        Backend,
        BackendContext,
        BackendSpec,
        ExecuteTimer,
        Instance,
        InstanceContext,
        Model,
        ModelContext,
        hookimpl,
        hookspec,
    )
    from .dtypes import DataType
    from .errors import ErrorCode, TritonError
    from .request import InferenceRequest, InferenceResponse, RequestedOutput
    from .server import Server
    from .tensor import Tensor
