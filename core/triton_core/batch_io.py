"""Ragged inputs, batch inputs and batch outputs (Triton's ragged batching), for backends.

Triton's rules, as its backends apply them (backend_input_collector, backend_output_responder):

- An input with ``allow_ragged_batch`` may have other shapes in each request of a batch. The
  backend hands the model the requests' elements concatenated into one 1-D tensor of their
  total element count (each request's elements in request order).
- A ``batch_input`` is a tensor the backend makes from the batch, under each of its
  ``target_name`` names, of its ``data_type`` (TYPE_INT32 or TYPE_FP32), from the shapes of its
  one ``source_input`` (N: the requests in the batch; a request's element count includes its
  batch dimension):

  ========================================== ==========================================
  BATCH_ELEMENT_COUNT                        [N]: each request's element count
  BATCH_ACCUMULATED_ELEMENT_COUNT            [N]: the running sum of those counts
  BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO  [N + 1]: 0, then the running sum
  BATCH_MAX_ELEMENT_COUNT_AS_SHAPE           [largest count]: only its shape says something
                                             (Triton leaves the values uninitialized; here 0)
  BATCH_ITEM_SHAPE                           [batch items, rank - 1]: each batch item's shape
                                             without the batch dimension
  BATCH_ITEM_SHAPE_FLATTEN                   the same, flattened to 1-D
  ========================================== ==========================================

- A ``batch_output`` of kind BATCH_SCATTER_WITH_INPUT_SHAPE is split per request by the shape
  of its source input: each request takes the output's config shape (batch dimension first)
  with each -1 replaced by the source input's dimension at the same place, and that many
  elements from the flat output, in request order. Other outputs are split by batch size.

For a model without batching (max_batch_size 0) the batch is one request and its shape has
no batch dimension: BATCH_ITEM_SHAPE then holds the whole shape, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import ModelConfig
from .config.model_config import BatchInput
from .dtypes import DataType
from .errors import TritonError
from .request import InferenceRequest

BATCH_INPUT_KINDS = (
    "BATCH_ELEMENT_COUNT",
    "BATCH_ACCUMULATED_ELEMENT_COUNT",
    "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
    "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
    "BATCH_ITEM_SHAPE",
    "BATCH_ITEM_SHAPE_FLATTEN",
)
BATCH_OUTPUT_KINDS = ("BATCH_SCATTER_WITH_INPUT_SHAPE",)
_NUMPY = {"TYPE_INT32": np.int32, "TYPE_FP32": np.float32}


def validate_batch_io(config: ModelConfig) -> None:
    """Triton's load-time checks of ``batch_input`` and ``batch_output`` (ValidateBatchIO),
    in its words; plus: a batch input's target may not also be a config input."""
    inputs = {i.name for i in config.input}
    outputs = {o.name for o in config.output}

    def fail(msg: str) -> None:
        raise TritonError.invalid_arg(f"{msg} for {config.name}")

    for bi in config.batch_input:
        if bi.kind not in BATCH_INPUT_KINDS:
            fail(f"unknown batch input kind '{bi.kind}'")
        if len(bi.source_input) != 1:
            fail(f"batch input kind '{bi.kind}' expects 1 source input, got {len(bi.source_input)}")
        if bi.data_type not in _NUMPY:
            fail("batch input data type must be TYPE_INT32 or TYPE_FP32")
        for source in bi.source_input:
            if source not in inputs:
                fail(f"unknown source input name '{source}'")
        if not bi.target_name:
            fail(f"batch input kind '{bi.kind}' names no target_name")
        for target in bi.target_name:
            if target in inputs:
                fail(f"batch input target '{target}' is also an input of the model configuration; "
                     "the backend makes it, so clients cannot send it")
    for bo in config.batch_output:
        if bo.kind not in BATCH_OUTPUT_KINDS:
            fail(f"unknown batch output kind '{bo.kind}'")
        if len(bo.source_input) != 1:
            fail(f"batch output kind '{bo.kind}' expects 1 source input, got {len(bo.source_input)}")
        for source in bo.source_input:
            if source not in inputs:
                fail(f"unknown source input name '{source}'")
        seen: set[str] = set()
        for target in bo.target_name:
            if target not in outputs:
                fail(f"unknown target output name '{target}'")
            if target in seen:
                fail(f"target output name '{target}' can only be specified once")
            seen.add(target)


def ragged_inputs(config: ModelConfig) -> frozenset[str]:
    """The inputs marked ``allow_ragged_batch``."""
    return frozenset(i.name for i in config.input if i.allow_ragged_batch)


def gather_ragged(requests: Sequence[InferenceRequest], name: str) -> np.ndarray:
    """Input ``name`` of every request, flattened and concatenated: one 1-D array."""
    arrays = [r.inputs[name].as_numpy().reshape(-1) for r in requests]
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays)


def _shape(request: InferenceRequest, name: str) -> tuple[int, ...]:
    tensor = request.inputs.get(name)
    if tensor is None:  # an optional source input one request left out
        raise TritonError.invalid_arg(
            f"input '{name}' is the source of a batch input or output and must be in every request")
    return tuple(tensor.shape)


def make_batch_input(requests: Sequence[InferenceRequest], spec: BatchInput,
                     batching: bool = True) -> np.ndarray:
    """The tensor of batch input ``spec`` for ``requests`` (one batch, in order)."""
    shapes = [_shape(r, spec.source_input[0]) for r in requests]
    counts = np.array([int(np.prod(s, dtype=np.int64)) for s in shapes], dtype=np.int64)
    dtype = _NUMPY[spec.data_type]
    kind = spec.kind
    if kind == "BATCH_ELEMENT_COUNT":
        return counts.astype(dtype)
    if kind == "BATCH_ACCUMULATED_ELEMENT_COUNT":
        return np.cumsum(counts).astype(dtype)
    if kind == "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO":
        return np.concatenate([[0], np.cumsum(counts)]).astype(dtype)
    if kind == "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE":
        return np.zeros(int(counts.max(initial=0)), dtype=dtype)
    if kind in ("BATCH_ITEM_SHAPE", "BATCH_ITEM_SHAPE_FLATTEN"):
        items = [(s[0], s[1:]) if batching else (1, s) for s in shapes]
        ranks = {len(dims) for _, dims in items}
        if len(ranks) > 1:
            raise TritonError.invalid_arg(
                f"input '{spec.source_input[0]}' has a different rank in requests of one batch; "
                f"batch input kind '{kind}' needs one rank")
        rank = ranks.pop() if ranks else 0
        rows = [dims for n, dims in items for _ in range(n)]
        table = np.array(rows, dtype=dtype).reshape(len(rows), rank)
        return table.reshape(-1) if kind == "BATCH_ITEM_SHAPE_FLATTEN" else table
    raise TritonError.internal(f"unknown batch input kind '{kind}'")


def make_batch_inputs(requests: Sequence[InferenceRequest], config: ModelConfig
                      ) -> dict[str, np.ndarray]:
    """Every batch input of ``config`` for ``requests``, by target name."""
    batching = config.max_batch_size > 0
    out: dict[str, np.ndarray] = {}
    for spec in config.batch_input:
        array = make_batch_input(requests, spec, batching)
        for target in spec.target_name:
            out[target] = array
    return out


def batch_input_datatypes(config: ModelConfig) -> dict[str, DataType]:
    """Target name -> datatype of every batch input: the model takes them as inputs."""
    return {t: DataType.from_config(bi.data_type) for bi in config.batch_input for t in bi.target_name}


@dataclass(frozen=True)
class ScatterByInputShape:
    """How one batch output (BATCH_SCATTER_WITH_INPUT_SHAPE) is split per request."""

    output: str
    source_input: str
    dims: tuple[int, ...]
    """The output's config shape, with the batch dimension first when batching."""

    def shapes(self, requests: Sequence[InferenceRequest]) -> list[tuple[int, ...]]:
        out = []
        for r in requests:
            source = _shape(r, self.source_input)
            shape = []
            for i, d in enumerate(self.dims):
                if d != -1:
                    shape.append(d)
                elif i < len(source):
                    shape.append(source[i])
                else:
                    raise TritonError.invalid_arg(
                        f"output '{self.output}' takes dimension {i} from input '{self.source_input}', "
                        f"which has shape {list(source)}")
            out.append(tuple(shape))
        return out

    def scatter(self, array: np.ndarray, requests: Sequence[InferenceRequest]) -> list[np.ndarray]:
        """``array`` (any shape; its elements in request order) split into each request's shape."""
        shapes = self.shapes(requests)
        counts = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        flat = array.reshape(-1)
        if flat.size != sum(counts):
            raise TritonError.internal(
                f"output '{self.output}' has {flat.size} elements; the shapes of input "
                f"'{self.source_input}' in the batch call for {sum(counts)}")
        bounds = np.cumsum(counts)[:-1]
        return [part.reshape(s) for part, s in zip(np.split(flat, bounds), shapes, strict=True)]


def batch_output_scatters(config: ModelConfig) -> dict[str, ScatterByInputShape]:
    """Output name -> its rule, for every target of a batch output in ``config``."""
    batching = config.max_batch_size > 0
    out: dict[str, ScatterByInputShape] = {}
    for bo in config.batch_output:
        for target in bo.target_name:
            cfg = config.output_by_name(target)
            if cfg is None:
                continue  # validate_batch_io refused it at load
            dims = tuple(cfg.dims)
            out[target] = ScatterByInputShape(target, bo.source_input[0], (-1, *dims) if batching else dims)
    return out
