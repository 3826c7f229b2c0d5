"""model_warmup: requests run on every instance before a model version turns READY."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import abi
from ..dtypes import DataType
from ..errors import TritonError
from ..request import InferenceRequest
from ..tensor import Tensor, element_count

if TYPE_CHECKING:
    from .version import LoadedVersion


def _tensor(name: str, spec: dict[str, Any], batch: int, batched: bool, warmup_dir: Path,
            rng: np.random.Generator) -> Tensor:
    dt = DataType.from_config(spec.get("data_type", "TYPE_INVALID"))
    dims = [int(d) for d in spec.get("dims", [])]
    if any(d < 0 for d in dims):
        raise TritonError.invalid_arg(f"warmup input '{name}' needs fixed dims, got {dims}")
    shape = ([batch] if batched else []) + dims
    n = element_count(shape)
    if "input_data_file" in spec:
        path = (warmup_dir / spec["input_data_file"]).resolve()
        if not path.is_relative_to(warmup_dir.resolve()):
            raise TritonError.invalid_arg(f"warmup input '{name}': file outside the warmup folder")
        raw = path.read_bytes()
        if dt is DataType.BYTES:
            one = Tensor.from_raw(name, dt, dims, raw).as_numpy()
            arr = np.stack([one] * batch) if batched else one
            return Tensor(name, dt, shape, array=arr)
        one = np.frombuffer(raw, dtype=dt.numpy)
        per = element_count(dims)
        if one.size != per:
            raise TritonError.invalid_arg(
                f"warmup input '{name}': file '{spec['input_data_file']}' holds {one.size} "
                f"elements, dims {dims} need {per}")
        arr = np.tile(one, batch if batched else 1).reshape(shape)
        return Tensor(name, dt, shape, array=arr)
    if dt is DataType.BYTES:
        value = b"" if spec.get("zero_data") else b"warmup"
        arr = np.empty(n, dtype=object)
        arr[:] = [value] * n
        return Tensor(name, dt, shape, array=arr.reshape(shape))
    if spec.get("random_data"):
        if dt is DataType.BOOL:
            arr = rng.integers(0, 2, n).astype(np.bool_)
        elif dt.numpy.kind == "f" or dt is DataType.BF16:
            arr = rng.random(n).astype(np.float32).astype(dt.numpy) if dt is not DataType.BF16 \
                else (rng.random(n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        else:
            arr = rng.integers(0, 100, n).astype(dt.numpy)
    else:
        arr = np.zeros(n, dtype=dt.numpy)
    return Tensor(name, dt, shape, array=arr.reshape(shape))


def run_warmup(lv: LoadedVersion, model_path: Path) -> None:
    """Run each warmup sample `count` times on every instance; a failure fails the load."""
    cfg = lv.config
    if not cfg.model_warmup or lv.decoupled:  # decoupled models answer through senders
        return
    rng = np.random.default_rng(0)
    batched = cfg.max_batch_size > 0
    for sample in cfg.model_warmup:
        name = sample.get("name", "warmup")
        batch = int(sample.get("batch_size", 1) or 1)
        count = max(1, int(sample.get("count", 1) or 1))
        inputs = sample.get("inputs", {})
        for inst in lv.instances:
            for _ in range(count):
                req = InferenceRequest(model_name=lv.name, model_version=lv.version, id=name,
                                       inputs={n: _tensor(n, s, batch, batched,
                                                          model_path / "warmup", rng)
                                               for n, s in inputs.items()})
                try:  # before the drivers start: nothing else runs on the instance
                    responses = inst.execute([req], abi.ExecuteTimer())
                except TritonError as e:
                    raise TritonError(e.code, f"model '{lv.name}' warmup sample '{name}' "
                                              f"failed: {e.message}") from None
                except Exception as e:
                    raise TritonError.internal(f"model '{lv.name}' warmup sample '{name}' "
                                               f"failed: {type(e).__name__}: {e}") from None
                errors = [r.error for r in responses if r.error is not None]
                if errors:
                    raise TritonError.invalid_arg(
                        f"model '{lv.name}' warmup sample '{name}' failed: {errors[0].message}")
