"""What an instance runs: a callable from config-named inputs to the model's result, how its
result maps to config outputs, and the torch settings around each call."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .outputs import OutputSelector
from .params import TorchParameters


@dataclass
class Runner:
    call: Callable[[dict[str, object]], object]
    selector: OutputSelector
    scripted: bool
    """TorchScript: the graph-executor settings apply."""

    @contextlib.contextmanager
    def context(self, params: TorchParameters) -> Iterator[None]:
        # inference_mode implies no_grad; nested with-statements cost less than an ExitStack
        grad = torch.inference_mode() if params.inference_mode else torch.no_grad()
        if not self.scripted or params.optimized_execution:
            # optimized execution is torch's default, and the thread-local switch is only set
            # (below) around the calls of a model that turns it off
            with grad:
                yield
            return
        # thread-local in torch: set around every call, as Triton does per execute
        with grad, torch.jit.optimized_execution(False):
            yield


def apply_global_settings(params: TorchParameters, cuda: bool) -> None:
    """Process-wide torch switches a model's parameters set explicitly (Triton sets them
    before each execute; they are global in torch, so the last model to run wins). cuDNN's
    switch matters only to an instance on a CUDA device."""
    if params.tensor_fuser is not None:
        torch._C._jit_set_texpr_fuser_enabled(params.tensor_fuser)  # noqa: SLF001
    if params.jit_profiling is not None:
        torch._C._jit_set_profiling_mode(params.jit_profiling)  # noqa: SLF001
    if params.jit_executor is not None:
        torch._C._jit_set_profiling_executor(params.jit_executor)  # noqa: SLF001
    if cuda and torch.backends.cudnn.enabled != params.cudnn:
        torch.backends.cudnn.enabled = params.cudnn
