"""Auto-complete and validation of a model config against an ONNX model, by Triton's rules.

Triton's onnxruntime backend (src/onnxruntime.cc, ``AutoCompleteConfig`` and the
instance's ``ValidateInputs`` / ``ValidateOutputs``) does this:

Auto-complete (only when the server allows it):
1. When the config lists inputs (or batch inputs) *and* outputs, nothing is
   auto-completed.
2. Batching is possible only if every model input and output has a first
   dimension that is variable (-1 / symbolic). When possible and
   ``max_batch_size`` is 0 it becomes the default (4, or the backend config
   ``default-max-batch-size``); then, when ``max_batch_size`` > 1 and neither
   ``dynamic_batching`` nor ``sequence_batching`` is set, an empty
   ``dynamic_batching`` is added. When batching is not possible and
   ``max_batch_size`` is not 0, the load fails.
3. An empty ``input`` (``output``) section is filled with every model input
   (output): name, data type, and dims without the batch dimension when
   ``max_batch_size`` > 0. A tensor left with no dims gets dims [1], plus an
   empty ``reshape`` when ``max_batch_size`` > 0 (a batched "scalar"); a real
   scalar of a non-batching model gets dims [1] and is fed to ONNX Runtime with
   rank 0.

Extension (a config Triton would refuse): an entry that names a model tensor
but leaves ``data_type`` or ``dims`` out gets them from the model.

Validation (always, auto-complete or not) fails the load with an error naming
the model and the tensor: a config input the model does not have, a count of
required inputs different from the model's, a data type mismatch, dims that do
not fit the model's shape (a -1 on either side matches for inputs; outputs
must match exactly), a batching config for a tensor whose first dimension is
fixed, an optional input in a batching model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from triton_core.config import DynamicBatching, ModelConfig, ModelInput, ModelOutput
from triton_core.config.model_config import Reshape
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from . import dtypes

log = logging.getLogger("triton_backend_onnx")

DEFAULT_MAX_BATCH_SIZE = 4


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as ONNX Runtime reports it."""

    name: str
    ort_type: str
    dims: tuple[int, ...]
    """-1 for a symbolic or unknown dimension; () for a scalar (or unknown rank)."""

    @property
    def datatype(self) -> DataType | None:
        return dtypes.from_ort(self.ort_type)


@dataclass
class Signature:
    """A model's inputs, outputs and overridable initializers, in model order."""

    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)
    overridable: dict[str, TensorInfo] = field(default_factory=dict)

    @classmethod
    def from_session(cls, session) -> Signature:
        def infos(args: Iterable) -> dict[str, TensorInfo]:
            return {a.name: TensorInfo(a.name, a.type, _dims(a.shape)) for a in args}

        overridable = getattr(session, "get_overridable_initializers", list)()
        return cls(
            inputs=infos(session.get_inputs()),
            outputs=infos(session.get_outputs()),
            overridable=infos(overridable),
        )

    def can_batch(self) -> bool:
        return all(
            len(t.dims) > 0 and t.dims[0] == -1
            for t in (*self.inputs.values(), *self.outputs.values())
        )


def _dims(shape: Sequence | None) -> tuple[int, ...]:
    if not shape:
        return ()
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _shape(dims: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _triton_type(model: str, kind: str, t: TensorInfo) -> DataType:
    dt = t.datatype
    if dt is None:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', {kind} '{t.name}' has ONNX type "
            f"'{t.ort_type}', which has no Triton data type"
        )
    return dt


def _config_dims(t: TensorInfo, max_batch_size: int) -> tuple[list[int], bool]:
    """dims for the config and whether an empty reshape goes with them."""
    dims = list(t.dims[1:] if max_batch_size > 0 else t.dims)
    if dims:
        return dims, False
    return [1], max_batch_size > 0


def autocomplete(
    config: ModelConfig,
    sig: Signature,
    model: str,
    default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> ModelConfig:
    """A completed copy of ``config`` (the argument is not changed)."""
    cfg = config.model_copy(deep=True)
    input_cnt = len(cfg.input) + len(cfg.batch_input)
    output_cnt = len(cfg.output)

    if input_cnt > 0 and output_cnt > 0:
        log.info(
            "skipping model configuration auto-complete for '%s': inputs and outputs "
            "already specified",
            model,
        )
        _fill_entries(cfg, sig, model)
        return cfg

    _autocomplete_max_batch(cfg, sig, model, default_max_batch_size)
    if input_cnt == 0:
        cfg.input = [_make_input(t, cfg.max_batch_size, model) for t in sig.inputs.values()]
    if output_cnt == 0:
        cfg.output = [_make_output(t, cfg.max_batch_size, model) for t in sig.outputs.values()]
    _fill_entries(cfg, sig, model)
    return cfg


def _autocomplete_max_batch(
    cfg: ModelConfig, sig: Signature, model: str, default_max_batch_size: int
) -> None:
    if sig.can_batch():
        if cfg.max_batch_size == 0:
            cfg.max_batch_size = max(default_max_batch_size, 0)
            log.warning(
                "autofilled max_batch_size to %d for model '%s' since batching is supported "
                "but no max_batch_size is specified in model configuration. Must specify "
                "max_batch_size to utilize autofill with a larger max batch size",
                cfg.max_batch_size,
                model,
            )
        if (
            cfg.max_batch_size > 1
            and cfg.dynamic_batching is None
            and cfg.sequence_batching is None
        ):
            cfg.dynamic_batching = DynamicBatching()
    elif cfg.max_batch_size != 0:
        raise TritonError.invalid_arg(
            f"autofill failed for model '{model}': model does not support batching while "
            f"non-zero max_batch_size is specified"
        )


def _make_input(t: TensorInfo, max_batch_size: int, model: str) -> ModelInput:
    dt = _triton_type(model, "input", t)
    dims, reshape = _config_dims(t, max_batch_size)
    return ModelInput(
        name=t.name,
        data_type=dt.config_name,
        dims=dims,
        reshape=Reshape(shape=[]) if reshape else None,
    )


def _make_output(t: TensorInfo, max_batch_size: int, model: str) -> ModelOutput:
    dt = _triton_type(model, "output", t)
    dims, reshape = _config_dims(t, max_batch_size)
    return ModelOutput(
        name=t.name,
        data_type=dt.config_name,
        dims=dims,
        reshape=Reshape(shape=[]) if reshape else None,
    )


def _fill_entries(cfg: ModelConfig, sig: Signature, model: str) -> None:
    """Give entries that name a model tensor but lack data_type / dims those of the model."""
    pairs = [(io, sig.inputs.get(io.name) or sig.overridable.get(io.name), "input") for io in cfg.input]
    pairs += [(io, sig.outputs.get(io.name), "output") for io in cfg.output]
    for io, t, kind in pairs:
        if t is None:
            continue
        if io.data_type == "TYPE_INVALID":
            io.data_type = _triton_type(model, kind, t).config_name
        if not io.dims and io.reshape is None:
            dims, reshape = _config_dims(t, cfg.max_batch_size)
            io.dims = dims
            if reshape:
                io.reshape = Reshape(shape=[])


# --------------------------------------------------------------------------- validation


def _sequence_input_count(cfg: ModelConfig) -> int:
    sb = cfg.sequence_batching or {}
    return len(sb.get("control_input", []) or []) + len(sb.get("state", []) or [])


def validate(cfg: ModelConfig, sig: Signature, model: str) -> None:
    """Raise INVALID_ARG when the config does not fit the model."""
    mbs = cfg.max_batch_size
    required = [i for i in cfg.input if not i.optional]
    expected = len(required) + len(cfg.batch_input) + _sequence_input_count(cfg)
    if len(sig.inputs) != expected:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects {expected} inputs, "
            f"model provides {len(sig.inputs)} (configuration: "
            f"{', '.join(i.name for i in required) or 'none'}; model: "
            f"{', '.join(sig.inputs) or 'none'})"
        )

    allowed_inputs = {**sig.inputs, **sig.overridable}
    for io in cfg.input:
        t = allowed_inputs.get(io.name)
        if t is None:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', unexpected inference input '{io.name}', "
                f"allowed inputs are: {', '.join(sorted(allowed_inputs))}"
            )
        if io.optional and mbs != 0:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', optional input '{io.name}' is not "
                "supported for models that support batching"
            )
        _check_type(model, "input", io.name, io.data_type, t)
        dims = io.reshape.shape if io.reshape is not None else io.dims
        if io.allow_ragged_batch:
            if t.dims != (-1,):
                raise TritonError.invalid_arg(
                    f"unable to load model '{model}', configuration expects model provides "
                    f"input with shape [-1] for ragged input '{io.name}', model provides "
                    f"{_shape(t.dims)}"
                )
            continue
        _check_dims(model, "input", io.name, t, dims, mbs, exact=False)

    batch_outputs = {
        name for bo in cfg.batch_output for name in bo.target_name
    }
    for io in cfg.output:
        t = sig.outputs.get(io.name)
        if t is None:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', unexpected inference output '{io.name}', "
                f"allowed outputs are: {', '.join(sorted(sig.outputs))}"
            )
        _check_type(model, "output", io.name, io.data_type, t)
        if io.name in batch_outputs:
            continue
        dims = io.reshape.shape if io.reshape is not None else io.dims
        _check_dims(model, "output", io.name, t, dims, mbs, exact=True)


def _check_type(model: str, kind: str, name: str, config_type: str, t: TensorInfo) -> None:
    model_type = t.datatype
    if model_type is None:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', {kind} '{name}' has ONNX type '{t.ort_type}', "
            "which has no Triton data type"
        )
    if config_type == "TYPE_INVALID":
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', {kind} '{name}' has no data_type in the "
            f"configuration (the model provides {model_type.config_name})"
        )
    if DataType.from_config(config_type) is not model_type:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects datatype {config_type} "
            f"for {kind} '{name}', model provides {model_type.config_name}"
        )


def _check_dims(
    model: str,
    kind: str,
    name: str,
    t: TensorInfo,
    dims: Sequence[int],
    max_batch_size: int,
    exact: bool,
) -> None:
    if len(t.dims) == 0:
        # A scalar in the model: the config may only say [1] (or [1, 1], ...).
        if max_batch_size > 0:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', {kind} '{name}' is a scalar in the model, "
                "which cannot have a batch dimension, but max_batch_size is "
                f"{max_batch_size}"
            )
        if any(d != 1 for d in dims):
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', scalar tensor '{name}', should only "
                "provide 1 in the model configuration when the model doesn't support "
                f"batching. Model configuration provided: {_shape(dims)}."
            )
        return
    if max_batch_size > 0 and t.dims[0] != -1:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', model {kind} '{name}' has shape "
            f"{_shape(t.dims)} whose first dimension is not variable, so it cannot be "
            f"batched, but max_batch_size is {max_batch_size}"
        )
    debatched = t.dims[1:] if max_batch_size > 0 else t.dims
    ok = len(debatched) == len(dims)
    if ok:
        for md, d in zip(debatched, dims, strict=True):
            if exact or (md != -1 and d != -1):
                ok = ok and md == d
    if not ok:
        batch = " (after the batch dimension)" if max_batch_size > 0 else ""
        raise TritonError.invalid_arg(
            f"unable to load model '{model}', configuration expects dims {_shape(dims)} "
            f"for {kind} '{name}', model provides {_shape(debatched)}{batch}"
        )
