"""Write a model.mlxfn that the mlx backend can auto-complete a config from.

    import numpy as np
    from triton_backend_metal.mlx.export import export_model

    def add_sub(a, b):
        return a + b, a - b

    x = np.zeros((1, 16), np.float32)
    export_model("models/add_sub/1/model.mlxfn", add_sub,
                 inputs={"INPUT0": x, "INPUT1": x}, outputs=["OUTPUT0", "OUTPUT1"])

It is ``mx.export_function`` with the tensor names, datatypes and shapes stored
in the file's metadata (see ``signature``). In a shapeless export (the default)
the ``variable_axes`` of every input (the batch axis 0 by default) are recorded
as -1; an output axis is -1 when it changes with them (found by calling the
function twice, with those axes one longer the second time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from triton_core.dtypes import DataType

from . import runtime
from .dtypes import from_mlx, to_array
from .signature import Signature, TensorSpec


def _outputs_of(fn: Callable, args: list) -> list:
    result = fn(*args)
    return list(result) if isinstance(result, tuple | list) else [result]


def _grown(array: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    pad = [(0, 1 if i in axes else 0) for i in range(array.ndim)]
    return np.pad(array, pad, mode="edge")


def _export(
    path: str,
    fn: Callable,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    datatypes: Mapping[str, str],
    shapeless: bool,
    variable_axes: Sequence[int],
) -> Signature:
    import mlx.core as mx

    names = list(inputs)
    types = {
        n: DataType.from_wire(datatypes[n])
        if n in datatypes
        else DataType.from_numpy(np.asarray(inputs[n]).dtype)
        for n in names
    }
    examples = [np.asarray(inputs[n]) for n in names]
    args = [to_array(a, types[n]) for n, a in zip(names, examples, strict=True)]
    first = _outputs_of(fn, args)
    mx.eval(first)
    if len(first) != len(outputs):
        raise ValueError(f"the function returns {len(first)} arrays, outputs names {len(outputs)}")
    varying: list[set[int]] = [set() for _ in first]
    if shapeless:
        grown = [to_array(_grown(a, variable_axes), types[n]) for n, a in zip(names, examples, strict=True)]
        second = _outputs_of(fn, grown)
        mx.eval(second)
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            varying[i] = {ax for ax in range(a.ndim) if b.ndim == a.ndim and a.shape[ax] != b.shape[ax]}
    sig = Signature(shapeless=shapeless)
    for n, a in zip(names, examples, strict=True):
        dims = tuple(-1 if shapeless and ax in variable_axes else d for ax, d in enumerate(a.shape))
        sig.inputs.append(TensorSpec(n, types[n], dims))
    for name, out, axes in zip(outputs, first, varying, strict=True):
        dt = from_mlx(out.dtype)
        if dt is None:
            raise ValueError(f"output '{name}' has MLX dtype {out.dtype}, which has no Triton type")
        sig.outputs.append(
            TensorSpec(name, dt, tuple(-1 if ax in axes else d for ax, d in enumerate(out.shape)))
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    mx.export_function(str(path), fn, *args, shapeless=shapeless, metadata=sig.to_metadata())
    return sig


def export_model(
    path: str | Path,
    fn: Callable,
    *,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    datatypes: Mapping[str, str] | None = None,
    shapeless: bool = True,
    variable_axes: Sequence[int] = (0,),
) -> Signature:
    """Export ``fn`` (positional arguments in ``inputs`` order) to ``path``; returns the
    signature written. ``datatypes`` overrides an input's type (v2 names), e.g. "BF16"
    for a uint16 array holding bfloat16 bits."""
    return runtime.run(
        _export,
        str(path),
        fn,
        dict(inputs),
        list(outputs),
        dict(datatypes or {}),
        shapeless,
        tuple(variable_axes),
    )
