"""torch's intra-op and inter-op thread pools are process-wide: the first model that asks
sets them (Triton's pytorch backend does the same with std::call_once); a later model
asking for other counts gets a warning naming both, and the first values stay."""

from __future__ import annotations

import logging
import threading

import torch

log = logging.getLogger("triton_backend_torch")


class ThreadSettings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: dict[str, tuple[int, str]] = {}  # kind -> (count, model that set it)

    def apply(self, model: str, intra: int | None, inter: int | None) -> None:
        with self._lock:
            if intra is not None:
                self._one("INTRA_OP_THREAD_COUNT", intra, model, torch.set_num_threads)
            if inter is not None:
                self._one("INTER_OP_THREAD_COUNT", inter, model, torch.set_num_interop_threads)

    def _one(self, key: str, count: int, model: str, setter) -> None:
        prior = self._set.get(key)
        if prior is not None:
            if prior[0] != count:
                log.warning(
                    "model '%s' asks %s=%d but this process already uses %d (set by model '%s'): "
                    "torch's thread pools are process-wide, the first setting stays",
                    model, key, count, prior[0], prior[1])
            return
        try:
            setter(count)
        except RuntimeError as e:
            # set_num_interop_threads fails once any inter-op work has started
            log.warning("model '%s': %s=%d cannot be applied now: %s", model, key, count, e)
            return
        self._set[key] = (count, model)
        log.info("model '%s': %s set to %d for this process", model, key, count)
