"""Auto-complete and validation of a model config against a Core ML model's spec.

Batching (Triton adds the batch dimension when max_batch_size > 0):

- *dimension*: every input is a multi-array whose first dimension is flexible (a range
  or enumerated shapes reaching both 1 and more) and no output's first dimension is
  fixed. A batch is one Core ML call on the concatenated arrays; the config dims leave
  the first dimension out. Auto-complete then sets max_batch_size (the backend config
  ``default-max-batch-size``, 4 by default, capped by the model's largest first
  dimension) and adds an empty dynamic_batching when it is above 1, as Triton does for
  ONNX models.
- *list*: max_batch_size > 0 on any other model (fixed shapes, images, stateful models):
  each batch row is one sample, and a batch runs as one Core ML batch prediction
  (``predict`` with a list). The config dims are the model's own.
- *none*: max_batch_size 0: each request is one Core ML call with its tensors as sent.

Auto-complete (only when the server allows it; skipped, as for Triton's ONNX backend,
when the config lists inputs and outputs) fills inputs and outputs: names, data types
and dims, -1 where Core ML allows several sizes. Images become UINT8 [H, W, C]
tensors with ``format: FORMAT_NHWC`` (FORMAT_NCHW in the config is honoured);
scalar features (int64, double, string) become [1] tensors; a classifier's probability
dictionary becomes an FP32 [num_classes] output in label order whose label_filename
lists the labels (Triton's classification extension then answers "score:index:label").
Core ML states become ``sequence_batching.state`` entries (input_name = the state's
name, output_name = name + "_out"), with sequence_batching added when missing.

Validation (always) fails the load with a message naming the model and the tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from triton_core.config import DynamicBatching, ModelConfig, ModelInput, ModelOutput
from triton_core.config.model_config import Reshape
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .dtypes import accepts_config_type
from .shapes import UNBOUNDED
from .signature import ARRAY, DICTIONARY, IMAGE, Signature, TensorInfo

log = logging.getLogger("triton_backend_coreml")

DEFAULT_MAX_BATCH_SIZE = 4
NONE = "none"
DIMENSION = "dimension"
LIST = "list"
STATE_OUTPUT_SUFFIX = "_out"


def _shape(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def batch_limit(sig: Signature) -> int | None:
    """The largest batch one Core ML call takes when the model batches along its first
    dimension; None when it does not (see the module docstring). -1: unbounded."""
    if not sig.inputs or sig.states:
        return None
    limit = UNBOUNDED
    for t in sig.inputs.values():
        if t.kind != ARRAY or t.rule is None or t.rule.rank == 0:
            return None
        sizes = t.rule.first_dim_sizes()
        if t.rule.enumerated:
            if 1 not in sizes or len(sizes) < 2:
                return None
            hi = max(sizes)
        else:
            lo, hi = sizes
            if lo > 1 or hi == 1:
                return None
        if hi != UNBOUNDED:
            limit = hi if limit == UNBOUNDED else min(limit, hi)
    for t in sig.outputs.values():
        if t.kind == ARRAY and t.dims is not None and (not t.dims or t.dims[0] != -1):
            return None
        if t.kind != ARRAY:
            return None
    return limit


def batch_mode(cfg: ModelConfig, sig: Signature) -> str:
    if cfg.max_batch_size <= 0:
        return NONE
    return DIMENSION if batch_limit(sig) is not None else LIST


@dataclass(frozen=True)
class _Where:
    model: str

    def fail(self, msg: str) -> TritonError:
        return TritonError.invalid_arg(f"unable to load model '{self.model}', {msg}")


def _require_type(t: TensorInfo, kind: str, w: _Where) -> DataType:
    if t.datatype is None:
        raise w.fail(f"{kind} '{t.name}' has {t.unsupported or 'a Core ML type'}, which Triton "
                     "cannot serve through Core ML's Python bridge")
    return t.datatype


def _channels_first(io: ModelInput | None) -> bool:
    return io is not None and io.format == "FORMAT_NCHW"


def model_dims(t: TensorInfo, mode: str, io: ModelInput | None = None) -> tuple[int, ...] | None:
    """The config dims that stand for feature ``t`` in ``mode``; None when unknown."""
    if t.kind == IMAGE:
        assert t.image is not None
        return t.image.dims(_channels_first(io))
    dims = t.dims
    if dims is None:
        return None
    if t.kind == ARRAY and mode == DIMENSION:
        return dims[1:]
    return dims


def _config_dims(t: TensorInfo, mode: str, w: _Where, kind: str) -> tuple[list[int], bool]:
    dims = model_dims(t, mode)
    if dims is None:
        raise w.fail(f"{kind} '{t.name}' has no shape in the Core ML model: give its dims in the "
                     "configuration")
    if dims:
        return list(dims), False
    return [1], mode == DIMENSION


def autocomplete(cfg_in: ModelConfig, sig: Signature, model: str,
                 default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 labels_file: Callable[[], str] | None = None) -> ModelConfig:
    """A completed copy of the config. ``labels_file`` writes the classifier's labels and
    returns the path to put in label_filename."""
    cfg = cfg_in.model_copy(deep=True)
    w = _Where(model)
    if cfg.input and cfg.output:
        log.info("skipping model configuration auto-complete for '%s': inputs and outputs "
                 "already specified", model)
    else:
        limit = batch_limit(sig)
        if limit is not None:
            if cfg.max_batch_size == 0:
                cap = default_max_batch_size if limit == UNBOUNDED else min(default_max_batch_size, limit)
                cfg.max_batch_size = max(cap, 0)
                log.warning("autofilled max_batch_size to %d for model '%s' since batching is "
                            "supported but no max_batch_size is specified in model configuration. "
                            "Must specify max_batch_size to utilize autofill with a larger max "
                            "batch size", cfg.max_batch_size, model)
            if cfg.max_batch_size > 1 and cfg.dynamic_batching is None and cfg.sequence_batching is None:
                cfg.dynamic_batching = DynamicBatching()
        mode = batch_mode(cfg, sig)
        if not cfg.input:
            cfg.input = [_make_input(t, mode, w) for t in sig.inputs.values()]
        if not cfg.output:
            cfg.output = [_make_output(t, sig, mode, w) for t in sig.outputs.values()
                          if t.datatype is not None]
    _fill_entries(cfg, sig, w)
    _fill_states(cfg, sig)
    if labels_file is not None and sig.classifier and sig.classifier.labels:
        out = cfg.output_by_name(sig.classifier.probabilities_output)
        if out is not None and not out.label_filename:
            out.label_filename = labels_file()
    return cfg


def _make_input(t: TensorInfo, mode: str, w: _Where) -> ModelInput:
    dt = _require_type(t, "input", w)
    dims, reshape = _config_dims(t, mode, w, "input")
    return ModelInput(name=t.name, data_type=dt.config_name, dims=dims,
                      format="FORMAT_NHWC" if t.kind == IMAGE else "FORMAT_NONE",
                      reshape=Reshape(shape=[]) if reshape else None, optional=t.optional)


def _make_output(t: TensorInfo, sig: Signature, mode: str, w: _Where) -> ModelOutput:
    dt = _require_type(t, "output", w)
    if t.kind == DICTIONARY:
        classes = _dictionary_dims(t, sig)
        if classes is None:
            raise w.fail(f"output '{t.name}' is a label dictionary whose labels the Core ML spec "
                         "does not list: give the output in the configuration with dims "
                         "[number of classes] and a label_filename")
        return ModelOutput(name=t.name, data_type=dt.config_name, dims=list(classes))
    dims, reshape = _config_dims(t, mode, w, "output")
    return ModelOutput(name=t.name, data_type=dt.config_name, dims=dims,
                       reshape=Reshape(shape=[]) if reshape else None)


def _fill_entries(cfg: ModelConfig, sig: Signature, w: _Where) -> None:
    """Entries that name a model feature but lack data_type / dims get the model's."""
    mode = batch_mode(cfg, sig)
    for io in cfg.input:
        t = sig.inputs.get(io.name)
        if t is None or t.datatype is None:
            continue
        if t.kind == IMAGE and io.format == "FORMAT_NONE":
            io.format = "FORMAT_NHWC"
        if io.data_type == "TYPE_INVALID":
            io.data_type = t.datatype.config_name
        if not io.dims and io.reshape is None:
            dims = model_dims(t, mode, io)
            if dims is not None:
                io.dims = list(dims) or [1]
    for out in cfg.output:
        t = sig.outputs.get(out.name)
        if t is None or t.datatype is None:
            continue
        if out.data_type == "TYPE_INVALID":
            out.data_type = t.datatype.config_name
        if not out.dims and out.reshape is None:
            dims = _dictionary_dims(t, sig) if t.kind == DICTIONARY else model_dims(t, mode)
            if dims is not None:
                out.dims = list(dims) or [1]


def _dictionary_dims(t: TensorInfo, sig: Signature) -> tuple[int, ...] | None:
    if sig.classifier and sig.classifier.probabilities_output == t.name and sig.classifier.labels:
        return (len(sig.classifier.labels),)
    return None


def _fill_states(cfg: ModelConfig, sig: Signature) -> None:
    if not sig.states:
        return
    sb = dict(cfg.sequence_batching or {})
    states = list(sb.get("state") or [])
    have = {s.get("input_name") for s in states}
    for t in sig.states.values():
        if t.name in have or t.datatype is None or t.rule is None:
            continue
        states.append({
            "input_name": t.name,
            "output_name": t.name + STATE_OUTPUT_SUFFIX,
            "data_type": t.datatype.config_name,
            "dims": list(t.rule.default),
            "initial_state": [{"name": "zero", "data_type": t.datatype.config_name,
                               "dims": list(t.rule.default), "zero_data": True}],
        })
    sb["state"] = states
    cfg.sequence_batching = sb


# validation --------------------------------------------------------------------------

def validate(cfg: ModelConfig, sig: Signature, model: str) -> None:
    w = _Where(model)
    mode = batch_mode(cfg, sig)
    limit = batch_limit(sig)
    if mode == DIMENSION and limit not in (None, UNBOUNDED) and cfg.max_batch_size > limit:
        raise w.fail(f"max_batch_size {cfg.max_batch_size} is above the largest batch the Core ML "
                     f"model takes ({limit})")
    for io in cfg.input:
        t = sig.inputs.get(io.name)
        if t is None:
            raise w.fail(f"unexpected inference input '{io.name}', allowed inputs are: "
                         f"{', '.join(sorted(sig.inputs))}")
        model_type = _require_type(t, "input", w)
        _check_type(w, "input", io.name, io.data_type, model_type, True)
        if t.kind == IMAGE and io.format not in ("FORMAT_NHWC", "FORMAT_NCHW"):
            raise w.fail(f"input '{io.name}' is an image: its format must be FORMAT_NHWC or "
                         f"FORMAT_NCHW, got {io.format}")
        if io.reshape is None:
            _check_dims(w, "input", io.name, model_dims(t, mode, io), io.dims)
    listed = {i.name for i in cfg.input}
    for t in sig.inputs.values():
        if t.name not in listed and not t.optional:
            raise w.fail(f"the Core ML model's input '{t.name}' is missing from the configuration "
                         f"(configuration: {', '.join(sorted(listed)) or 'none'})")
    for out in cfg.output:
        t = sig.outputs.get(out.name)
        if t is None:
            raise w.fail(f"unexpected inference output '{out.name}', allowed outputs are: "
                         f"{', '.join(sorted(sig.outputs))}")
        model_type = _require_type(t, "output", w)
        _check_type(w, "output", out.name, out.data_type, model_type, False)
        if t.kind == DICTIONARY and _dictionary_dims(t, sig) is None and not out.label_filename:
            raise w.fail(f"output '{out.name}' is a label dictionary whose labels the Core ML spec "
                         "does not list: give label_filename (one label a line, in score order)")
        want = _dictionary_dims(t, sig) if t.kind == DICTIONARY else model_dims(t, mode)
        if out.reshape is None:
            _check_dims(w, "output", out.name, want, out.dims)
    for st in (cfg.sequence_batching or {}).get("state", []) or []:
        t = sig.states.get(st.get("input_name", ""))
        if t is None:
            raise w.fail(f"sequence_batching state '{st.get('input_name')}' is not a state of the "
                         f"Core ML model (states: {', '.join(sig.states) or 'none'})")
        _check_type(w, "state", t.name, st.get("data_type", "TYPE_INVALID"), _require_type(t, "state", w),
                    True)


def _check_type(w: _Where, kind: str, name: str, config_type: str, model_type: DataType,
                is_input: bool) -> None:
    if config_type == "TYPE_INVALID":
        raise w.fail(f"{kind} '{name}' has no data_type in the configuration (the model provides "
                     f"{model_type.config_name})")
    if not accepts_config_type(model_type, DataType.from_config(config_type), is_input):
        raise w.fail(f"configuration expects datatype {config_type} for {kind} '{name}', model "
                     f"provides {model_type.config_name}")


def _check_dims(w: _Where, kind: str, name: str, model: tuple[int, ...] | None, dims) -> None:
    if model is None:
        return  # Core ML does not say; the config's dims stand
    want = tuple(model) or (1,)
    ok = len(want) == len(dims) and all(m == -1 or d == -1 or m == d for m, d in zip(want, dims, strict=True))
    if not ok:
        raise w.fail(f"configuration expects dims {_shape(dims)} for {kind} '{name}', model "
                     f"provides {_shape(want)}")
