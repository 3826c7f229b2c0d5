"""triton-core: a Triton-compatible inference server in Python."""

__version__ = "0.1.0"

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
