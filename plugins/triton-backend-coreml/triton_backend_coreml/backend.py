"""CoreMLBackend: the process-wide object. Holds the backend config
(``--backend-config=coreml,<key>=<value>``) and the compiled-model cache, and loads models."""

from __future__ import annotations

from pathlib import Path

from triton_core.abi import Backend, BackendContext, ModelContext
from triton_core.errors import TritonError

from .autocomplete import DEFAULT_MAX_BATCH_SIZE
from .compiled_cache import CompiledCache, default_root
from .model import BACKEND_NAME, CoreMLModel

# Backend config keys read here:
#   default-max-batch-size  max_batch_size auto-complete gives a batchable model (default 4)
#   cache-directory         where compiled copies and classifier label files are kept
KNOWN_CONFIG = ("default-max-batch-size", "cache-directory")


class CoreMLBackend(Backend):
    def __init__(self, ctx: BackendContext | None = None) -> None:
        self.ctx = ctx or BackendContext(name=BACKEND_NAME)
        self.config = dict(self.ctx.config)
        root = self.config.get("cache-directory", "").strip()
        self.cache = CompiledCache(Path(root).expanduser() if root else default_root())
        raw = self.config.get("default-max-batch-size")
        try:
            self.default_max_batch_size = DEFAULT_MAX_BATCH_SIZE if raw is None else int(raw)
        except ValueError:
            raise TritonError.invalid_arg(
                f"backend config 'default-max-batch-size' must be an integer, got '{raw}'") from None

    def load_model(self, ctx: ModelContext) -> CoreMLModel:
        return CoreMLModel(ctx, self.cache, self.default_max_batch_size)

    def close(self) -> None:
        pass
