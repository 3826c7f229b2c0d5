"""The conformance models of the pytorch backend (``triton conformance pytorch``): scripted
TorchScript modules written next to the reference configs of triton_core.conformance_spec.
Their forward() arguments carry the config names (Triton's FORWARD_ARGUMENT rule)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List  # noqa: UP035 - TorchScript reads typing's List in signatures

import torch

from triton_core.conformance_spec import (
    ADD_SUB,
    IDENTITY,
    SEQUENCE_ACCUMULATE,
    Capabilities,
    ConformanceSpec,
    ModelRole,
    role_config,
    standard_roles,
    write_config,
)

from .devices import gpu_reason
from .plugin import BACKEND_NAME

MAX_BATCH_SIZE = 8

CAPABILITIES = Capabilities(
    dtypes=("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
            "FP16", "FP32", "FP64", "BF16", "BYTES"),
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    variable_dims=True,
    bytes_any=False,
    decoupled=False,
    sequence=True,  # through implicit state (sequence_batching.state)
    gpu=True,       # KIND_GPU: cuda:<id> on Linux, mps on macOS; skipped where none is usable
    notes={
        "bytes_any": "TorchScript takes strings as List[str] (text): non-UTF-8 BYTES are refused "
                     "with INVALID_ARG",
        "decoupled": "a PyTorch module answers each request exactly once",
    },
)


class Identity(torch.nn.Module):
    def forward(self, INPUT0: torch.Tensor) -> torch.Tensor:  # noqa: N803 - the config's name
        return INPUT0.clone()


class EchoStrings(torch.nn.Module):
    def forward(self, INPUT0: List[str]) -> List[str]:  # noqa: N803, UP006
        return [s for s in INPUT0]


class AddSub(torch.nn.Module):
    def forward(self, INPUT0: torch.Tensor, INPUT1: torch.Tensor):  # noqa: N803
        return INPUT0 + INPUT1, INPUT0 - INPUT1


class Accumulate(torch.nn.Module):
    """OUTPUT0 = STATE_IN * (1 - START) + INPUT0; the new state is OUTPUT0."""

    def forward(self, INPUT0: torch.Tensor, START: torch.Tensor, READY: torch.Tensor,  # noqa: N803
                STATE_IN: torch.Tensor):  # noqa: N803
        total = STATE_IN * (1 - START) + INPUT0
        return total, total.clone()


# Implicit state of the accumulator: the running sum, zero after START.
_STATE = ('  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 '
          'dims: [1] initial_state { name: "zero" data_type: TYPE_INT32 dims: [1] zero_data: true } '
          '}]\n')


def _save(module: torch.nn.Module, folder: Path) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated; Triton serves it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(folder / "1" / "model.pt"))


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        text = role_config(role, backend=BACKEND_NAME, max_batch_size=MAX_BATCH_SIZE)
        if role.role == SEQUENCE_ACCUMULATE:
            text = text.replace("sequence_batching {\n", "sequence_batching {\n" + _STATE, 1)
            _save(Accumulate(), write_config(repo, name, text))
        elif role.role == IDENTITY:
            _save(EchoStrings() if role.datatype == "BYTES" else Identity(), write_config(repo, name, text))
        elif role.role == ADD_SUB:
            _save(AddSub(), write_config(repo, name, text))
        else:  # pragma: no cover - not claimed
            raise ValueError(f"no {role.role} model for pytorch")
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend=BACKEND_NAME, capabilities=CAPABILITIES, build_models=build_models,
                           gpu_available=gpu_reason)
