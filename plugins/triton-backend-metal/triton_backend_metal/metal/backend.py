"""MetalBackend: the process-wide object; owns the Metal engine (created on first use)."""

from __future__ import annotations

import threading

from triton_core.abi import Backend, BackendContext, ModelContext

from .engine import KernelEngine, MetalComputeEngine
from .model import BACKEND_NAME, MetalModel


class MetalBackend(Backend):
    def __init__(
        self,
        ctx: BackendContext | None = None,
        engine: KernelEngine | None = None,
        engine_type: type = MetalComputeEngine,
    ) -> None:
        self.ctx = ctx or BackendContext(name=BACKEND_NAME)
        self.config = dict(self.ctx.config)
        self._engine = engine
        self._engine_type = type(engine) if engine is not None else engine_type
        self._lock = threading.Lock()

    def engine(self) -> KernelEngine:
        with self._lock:
            if self._engine is None:
                self._engine = self._engine_type()
            return self._engine

    def load_model(self, ctx: ModelContext) -> MetalModel:
        return MetalModel(ctx, self._engine_type, self.engine)

    def close(self) -> None:
        self._engine = None
