"""TorchBackend: the process-wide object (TRITONBACKEND_Initialize). Holds the backend config
(``--backend-config=pytorch,<key>=<value>``) and torch's process-wide thread settings.

| backend config key       | effect                                                          |
|--------------------------|-----------------------------------------------------------------|
| default-max-batch-size   | max_batch_size auto-complete gives a batchable .pt2 program (4) |
| mps-fallback             | true: PYTORCH_ENABLE_MPS_FALLBACK=1 (ops MPS lacks run on the   |
|                          | CPU); only effective before torch is first imported             |
"""

from __future__ import annotations

import logging
import os
import sys

from triton_core.abi import Backend, BackendContext, ModelContext
from triton_core.errors import TritonError

log = logging.getLogger("triton_backend_torch")

KNOWN_CONFIG = ("default-max-batch-size", "mps-fallback")
DEFAULT_MAX_BATCH_SIZE = 4


class TorchBackend(Backend):
    def __init__(self, ctx: BackendContext | None = None) -> None:
        self.ctx = ctx or BackendContext(name="pytorch")
        self.config = dict(self.ctx.config)
        for key in self.config:
            if key not in KNOWN_CONFIG:
                log.warning("backend config 'pytorch,%s' is not read by the pytorch backend", key)
        if self.config.get("mps-fallback", "").strip().lower() in ("true", "1", "on"):
            if "torch" in sys.modules and os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") != "1":
                log.warning("backend config 'mps-fallback': torch was already imported; "
                            "set PYTORCH_ENABLE_MPS_FALLBACK=1 in the environment instead")
            os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
        raw = self.config.get("default-max-batch-size", str(DEFAULT_MAX_BATCH_SIZE))
        try:
            self.default_max_batch_size = int(raw)
        except ValueError:
            raise TritonError.invalid_arg(
                f"backend config 'default-max-batch-size' must be an integer, got '{raw}'") from None
        from .threads import ThreadSettings  # imports torch: after the environment is set

        self.threads = ThreadSettings()

    def load_model(self, ctx: ModelContext):
        from .model import TorchModel

        return TorchModel(ctx, self.threads, self.default_max_batch_size)

    def close(self) -> None:
        pass
