"""An imported MLX function and the calls made to it, all on the MLX thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from . import runtime
from .dtypes import from_mlx, to_array, to_numpy

_NO_STREAM = "in current thread"


def _mlx_error(e: Exception, prefix: str) -> TritonError:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, RuntimeError) and "There is no Stream" in msg and _NO_STREAM in msg:
        return TritonError.unavailable(
            f"{prefix}: {msg} The function was exported on an MLX stream that another thread of "
            "this process created first (MLX streams belong to one thread since MLX 0.31.2); "
            "export it in another process, or with triton_backend_metal.mlx.export.export_model"
        )
    if isinstance(e, ValueError | TypeError):
        return TritonError.invalid_arg(f"{prefix}: {msg}")
    return TritonError.internal(f"{prefix}: {msg}")


@dataclass(frozen=True)
class Produced:
    """One output as the function returned it."""

    shape: tuple[int, ...]
    datatype: DataType | None
    mlx_dtype: str


def _import(path: str):
    import mlx.core as mx

    return mx.import_function(path, return_metadata=True)


def import_function(path: Path, model: str):
    """(callable, metadata string) of an .mlxfn file."""
    try:
        return runtime.run(_import, str(path))
    except Exception as e:  # noqa: BLE001 - any MLX failure is a load failure
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': MLX cannot import '{path}': {str(e).strip()}"
        ) from None


def _device(kind: str):
    import mlx.core as mx

    if kind == "gpu":
        return mx.gpu
    if kind == "cpu":
        return mx.cpu
    return mx.default_device()


def _call(
    fn,
    inputs: Sequence[tuple[np.ndarray, DataType]],
    out_types: Sequence[DataType | None],
    device: str,
    prefix: str,
):
    import mlx.core as mx

    try:
        with mx.stream(_device(device)):
            args = [to_array(a, dt) for a, dt in inputs]
            outs = fn(*args)
            mx.eval(outs)
    except Exception as e:  # noqa: BLE001 - MLX raises ValueError/RuntimeError/TypeError
        raise _mlx_error(e, prefix) from None
    produced = [Produced(tuple(o.shape), from_mlx(o.dtype), str(o.dtype).rsplit(".", 1)[-1]) for o in outs]
    arrays = [None if dt is None else to_numpy(o, dt) for o, dt in zip(outs, out_types, strict=False)]
    return produced, arrays


def call(
    fn,
    inputs: Sequence[tuple[np.ndarray, DataType]],
    out_types: Sequence[DataType | None],
    device: str,
    prefix: str,
) -> tuple[list[Produced], list[np.ndarray | None]]:
    """Run ``fn`` on the MLX thread: what every output is, and the arrays of the outputs whose
    type is given in ``out_types`` (positional; None: not converted)."""
    return runtime.run(_call, fn, inputs, out_types, device, prefix)


def available(device: str) -> str | None:
    """None when MLX can use ``device`` ("cpu", "gpu") here, else why not."""
    import mlx.core as mx

    if runtime.run(mx.is_available, _device(device)):
        return None
    return (
        f"MLX has no {device.upper()} device here (its Metal build runs on Apple silicon, its CUDA "
        f"build on NVIDIA GPUs; this is {'the CPU build' if device == 'gpu' else 'a GPU-only build'})"
    )
