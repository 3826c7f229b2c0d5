"""Where an instance runs: KIND_CPU on the CPU; KIND_GPU on ``cuda:<device_id>`` (Linux,
Windows) or ``mps`` (macOS); KIND_MODEL leaves placement to the model (inputs stay on the
host, as Triton's pytorch backend does)."""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass

import torch

from triton_core.errors import TritonError

# torch 2.14/2.15 crash when two threads run MPS work at once: one at a time per process.
_MPS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Placement:
    device: torch.device | None
    """Where inputs go and the module is loaded; None for KIND_MODEL (the model decides)."""
    kind: str

    @property
    def is_cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    @property
    def is_mps(self) -> bool:
        return self.device is not None and self.device.type == "mps"

    @property
    def input_device(self) -> torch.device:
        return self.device if self.device is not None else torch.device("cpu")

    def serialize(self):
        """A context that serialises MPS work across the process (no-op elsewhere)."""
        return _MPS_LOCK if self.is_mps else contextlib.nullcontext()


def gpu_reason() -> str | None:
    """None when a GPU torch can use is here, else why not."""
    if sys.platform == "darwin":
        if not torch.backends.mps.is_built():
            return "this torch build has no MPS support"
        if not torch.backends.mps.is_available():
            return "MPS is not available on this Mac (macOS 12.3+ on Apple silicon is needed)"
        return None
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        return f"no CUDA device is visible to torch ({build})"
    return None


def placement(kind: str, device_id: int, model: str) -> Placement:
    if kind == "KIND_CPU":
        return Placement(torch.device("cpu"), kind)
    if kind == "KIND_MODEL":
        return Placement(None, kind)
    if kind != "KIND_GPU":
        raise TritonError.invalid_arg(f"model '{model}': instance kind {kind} is not supported")
    reason = gpu_reason()
    if reason is not None:
        raise TritonError.unavailable(f"model '{model}': KIND_GPU instance cannot be created: {reason}")
    if sys.platform == "darwin":
        if device_id != 0:
            raise TritonError.invalid_arg(
                f"model '{model}': MPS has one device (0); instance group asks for GPU {device_id}")
        return Placement(torch.device("mps"), kind)
    count = torch.cuda.device_count()
    if not 0 <= device_id < count:
        raise TritonError.invalid_arg(
            f"model '{model}': GPU {device_id} does not exist ({count} CUDA device(s) visible)")
    return Placement(torch.device("cuda", device_id), kind)
