"""triton-core: a Triton-compatible inference server in Python."""

__version__ = "0.1.0"

import os as _os

# gRPC C-core reads this when grpc loads (tritonclient's generated modules load it
# below): our gRPC server then serves connections from the polling thread grpc.aio
# already runs instead of EventEngine's own threads, one cross-thread hop less per
# call (unary ModelInfer at concurrency 1: +25-35% on 2 cores). gRPC clients in the
# process keep EventEngine's endpoints, but grpc then also runs its client-channel backup
# poller (a 5 s timer) while a channel is open. A user's own setting wins.
_os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_listener")

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
