"""Tensors the sequence batcher adds: control inputs (START, END, READY, CORRID) and implicit
state (``sequence_batching.state``: an input the core fills, an output it keeps). The model
takes and returns them like config tensors, named by the same rules (Triton wants
``<name>__<index>`` names for them; forward() argument names work here too)."""

from __future__ import annotations

from dataclasses import dataclass

from triton_core.config import ModelConfig
from triton_core.dtypes import DataType


@dataclass(frozen=True)
class SequenceTensor:
    name: str
    datatype: DataType
    dims: tuple[int, ...] = ()


def _control_datatype(control: dict) -> DataType:
    if "fp32_false_true" in control:
        return DataType.FP32
    if "bool_false_true" in control:
        return DataType.BOOL
    if control.get("data_type"):  # CONTROL_SEQUENCE_CORRID
        return DataType.from_config(control["data_type"])
    return DataType.INT32


def inputs(cfg: ModelConfig) -> list[SequenceTensor]:
    sb = cfg.sequence_batching or {}
    out = []
    for ci in sb.get("control_input", []) or []:
        controls = ci.get("control", []) or [{}]
        out.append(SequenceTensor(ci["name"], _control_datatype(controls[0]), (1,)))
    for st in sb.get("state", []) or []:
        out.append(SequenceTensor(st["input_name"], DataType.from_config(st.get("data_type", "TYPE_INVALID")),
                                  tuple(st.get("dims", []) or ())))
    return out


def state_outputs(cfg: ModelConfig) -> list[SequenceTensor]:
    sb = cfg.sequence_batching or {}
    return [SequenceTensor(st["output_name"], DataType.from_config(st.get("data_type", "TYPE_INVALID")),
                           tuple(st.get("dims", []) or ()))
            for st in sb.get("state", []) or []]
