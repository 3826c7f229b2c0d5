"""OnnxBackend: the process-wide object (TRITONBACKEND_Initialize): holds the backend
config (``--backend-config=onnxruntime,<key>=<value>``) and loads models."""

from __future__ import annotations

from triton_core.abi import Backend, BackendContext, ModelContext

from .model import OnnxModel

# Backend config keys read here:
#   default-max-batch-size      max_batch_size auto-complete gives a batchable model (default 4)
#   strict-execution-providers  default of the model parameter strict_execution_providers
KNOWN_CONFIG = ("default-max-batch-size", "strict-execution-providers")


class OnnxBackend(Backend):
    def __init__(self, ctx: BackendContext | None = None) -> None:
        self.ctx = ctx or BackendContext(name="onnxruntime")
        self.config = dict(self.ctx.config)

    def load_model(self, ctx: ModelContext) -> OnnxModel:
        return OnnxModel(ctx, self.config)

    def close(self) -> None:
        pass
