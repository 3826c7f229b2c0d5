"""Checks a request against its model's config before it is queued (Triton's Normalize)."""

from __future__ import annotations

from ..config import ModelConfig
from ..dtypes import DataType
from ..errors import TritonError
from ..request import InferenceRequest


def _fmt(shape: list[int] | tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _matches(dims: list[int], shape: tuple[int, ...]) -> bool:
    if len(dims) != len(shape):
        return False
    return all(d == -1 or d == s for d, s in zip(dims, shape, strict=True))


# a config's lookup tables, built once per config object (a reload makes a new one)
_TABLES: dict[int, tuple[ModelConfig, tuple]] = {}


def _tables(config: ModelConfig) -> tuple:
    hit = _TABLES.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    tables = ({i.name: (i, i.datatype) for i in config.input},
              [i.name for i in config.input if not i.optional],
              frozenset(o.name for o in config.output))
    if len(_TABLES) > 256:
        _TABLES.clear()
    _TABLES[id(config)] = (config, tables)
    return tables


def normalize_request(req: InferenceRequest, config: ModelConfig) -> int:
    """Validate names, datatypes, shapes and batch size; return the request's batch size.

    Inputs with a config ``reshape`` are reshaped in place for the backend.
    """
    name = config.name
    mbs = config.max_batch_size
    expected, required, known_outputs = _tables(config)
    for in_name in req.inputs:
        if in_name not in expected:
            raise TritonError.invalid_arg(f"unexpected inference input '{in_name}' for model '{name}'")
    missing = [n for n in required if n not in req.inputs]
    if missing:
        raise TritonError.invalid_arg(
            f"expected {len(required)} inputs but got {len(req.inputs)} inputs for model '{name}'. "
            f"Got input(s) {sorted(req.inputs)}, but missing required input(s) {missing}. "
            "Please provide all required input(s)."
        )
    batch = 0
    for in_name, t in req.inputs.items():
        cfg, want = expected[in_name]
        if t.datatype is not want:
            raise TritonError.invalid_arg(
                f"inference input '{in_name}' data-type is '{t.datatype.value}', "
                f"but model '{name}' expects '{want.value}'"
            )
        shape = t.shape
        dims = cfg.dims
        if mbs > 0:
            if len(shape) == 0:
                raise TritonError.invalid_arg(
                    f"inference input '{in_name}' for model '{name}' must have a batch dimension"
                )
            b = shape[0]
            if batch and b != batch:
                raise TritonError.invalid_arg(
                    f"input '{in_name}' batch size does not match other inputs for '{name}'"
                )
            batch = b
            if b < 1 or b > mbs:
                raise TritonError.invalid_arg(
                    f"inference request batch-size must be <= {mbs} for '{name}'"
                )
            full = [-1, *dims]
        else:
            full = list(dims)
            batch = 1
        if not _matches(full, shape):
            raise TritonError.invalid_arg(
                f"unexpected shape for input '{in_name}' for model '{name}'. "
                f"Expected {_fmt(full)}, got {_fmt(shape)}"
            )
        if cfg.reshape is not None and t.datatype is not DataType.BYTES:
            new = list(cfg.reshape.shape)
            if mbs > 0:
                new = [shape[0]] + new
            t.reshape(new)
    if req.outputs is not None:
        seen: set[str] = set()
        for o in req.outputs:
            if o.name in seen:  # Triton's words (InferenceRequest::AddRequestedOutput)
                raise TritonError.invalid_arg(f"output '{o.name}' already exists in request")
            seen.add(o.name)
            if o.name not in known_outputs:
                raise TritonError.invalid_arg(
                    f"unexpected inference output '{o.name}' for model '{name}'"
                )
    return batch or 1
