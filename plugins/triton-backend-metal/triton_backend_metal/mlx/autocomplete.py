"""Config auto-complete and validation against an exported function's signature.

As Triton's framework backends do: a config that lists inputs and outputs is not
auto-completed (entries that leave ``data_type`` or ``dims`` out get them from the
function); a batchable function (shapeless export, every first dimension -1) gets
``max_batch_size`` (default 4) and an empty ``dynamic_batching`` when the config says
none; empty ``input`` / ``output`` sections get the function's tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from triton_core.config import DynamicBatching, ModelConfig, ModelInput, ModelOutput
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .signature import Signature, TensorSpec, shape_text

log = logging.getLogger("triton_backend_metal.mlx")

DEFAULT_MAX_BATCH_SIZE = 4


def _config_dims(t: TensorSpec, max_batch_size: int) -> list[int]:
    dims = list(t.dims[1:] if max_batch_size > 0 else t.dims)
    return dims or [1]


def autocomplete(
    config: ModelConfig, sig: Signature, model: str, default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
) -> ModelConfig:
    """A completed copy of ``config``."""
    cfg = config.model_copy(deep=True)
    if not (cfg.input and cfg.output):
        if sig.can_batch():
            if cfg.max_batch_size == 0:
                cfg.max_batch_size = max(default_max_batch_size, 0)
                log.warning("autofilled max_batch_size to %d for model '%s'", cfg.max_batch_size, model)
            if cfg.max_batch_size > 1 and cfg.dynamic_batching is None and cfg.sequence_batching is None:
                cfg.dynamic_batching = DynamicBatching()
        elif cfg.max_batch_size != 0:
            raise TritonError.invalid_arg(
                f"autofill failed for model '{model}': model does not support batching while "
                f"non-zero max_batch_size is specified (export the function with shapeless=True "
                f"and a variable first dimension to batch it)"
            )
        if not cfg.input:
            cfg.input = [
                ModelInput(
                    name=t.name, data_type=t.datatype.config_name, dims=_config_dims(t, cfg.max_batch_size)
                )
                for t in sig.inputs
            ]
        if not cfg.output:
            cfg.output = [
                ModelOutput(
                    name=t.name, data_type=t.datatype.config_name, dims=_config_dims(t, cfg.max_batch_size)
                )
                for t in sig.outputs
            ]
    by_name = {t.name: t for t in (*sig.inputs, *sig.outputs)}
    for io in (*cfg.input, *cfg.output):
        t = by_name.get(io.name)
        if t is None:
            continue
        if io.data_type == "TYPE_INVALID":
            io.data_type = t.datatype.config_name
        if not io.dims and io.reshape is None:
            io.dims = _config_dims(t, cfg.max_batch_size)
    return cfg


def _check(model: str, kind: str, io, t: TensorSpec, mbs: int) -> None:
    if io.data_type != "TYPE_INVALID" and DataType.from_config(io.data_type) is not t.datatype:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects datatype {io.data_type} for "
            f"{kind} '{io.name}', model provides {t.datatype.config_name}"
        )
    if mbs > 0 and (not t.dims or t.dims[0] != -1):
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', model {kind} '{io.name}' has shape "
            f"{shape_text(t.dims)} whose first dimension is not variable, so it cannot be batched, "
            f"but max_batch_size is {mbs}"
        )
    model_dims = list(t.dims[1:] if mbs > 0 else t.dims) or [1]
    dims: Sequence[int] = io.reshape.shape if io.reshape is not None else io.dims
    ok = len(model_dims) == len(dims) and all(
        m == -1 or d == -1 or m == d for m, d in zip(model_dims, dims, strict=True)
    )
    if not ok:
        batch = " (after the batch dimension)" if mbs > 0 else ""
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects dims {shape_text(dims)} for "
            f"{kind} '{io.name}', model provides {shape_text(model_dims)}{batch}"
        )


def validate(cfg: ModelConfig, sig: Signature, model: str) -> None:
    """Raise INVALID_ARG when the config does not fit the function's signature."""
    names = [t.name for t in sig.inputs]
    config_names = [i.name for i in cfg.input]
    if sorted(names) != sorted(config_names):
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects {len(config_names)} inputs "
            f"({', '.join(config_names) or 'none'}), model provides {len(names)} "
            f"({', '.join(names) or 'none'})"
        )
    by_name = {t.name: t for t in sig.inputs}
    for io in cfg.input:
        if io.optional:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', optional input '{io.name}': an exported MLX "
                "function takes every argument"
            )
        _check(model, "input", io, by_name[io.name], cfg.max_batch_size)
    outputs = {t.name: t for t in sig.outputs}
    for io in cfg.output:
        t = outputs.get(io.name)
        if t is None:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', unexpected inference output '{io.name}', "
                f"allowed outputs are: {', '.join(outputs)}"
            )
        _check(model, "output", io, t, cfg.max_batch_size)
