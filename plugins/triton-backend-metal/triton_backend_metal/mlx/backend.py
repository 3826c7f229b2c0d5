"""MlxBackend: the process-wide object; holds the backend config
(``--backend-config=mlx,default-max-batch-size=N``) and loads models."""

from __future__ import annotations

from triton_core.abi import Backend, BackendContext, ModelContext

from .model import BACKEND_NAME, MlxModel


class MlxBackend(Backend):
    def __init__(self, ctx: BackendContext | None = None) -> None:
        self.ctx = ctx or BackendContext(name=BACKEND_NAME)
        self.config = dict(self.ctx.config)

    def load_model(self, ctx: ModelContext) -> MlxModel:
        return MlxModel(ctx, self.config)

    def close(self) -> None:
        pass
