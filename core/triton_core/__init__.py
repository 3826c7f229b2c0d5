"""triton-core: a Triton-compatible inference server in Python."""

__version__ = "0.1.0"

from .abi import (  # noqa: E402
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
from .dtypes import DataType  # noqa: E402
from .errors import ErrorCode, TritonError  # noqa: E402
from .request import InferenceRequest, InferenceResponse, RequestedOutput  # noqa: E402
from .server import Server  # noqa: E402
from .tensor import Tensor  # noqa: E402

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
