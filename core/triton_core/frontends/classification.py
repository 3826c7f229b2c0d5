"""Triton's classification extension: top-N of an output as "value:index[:label]" strings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..dtypes import DataType
from ..errors import TritonError
from ..tensor import Tensor

if TYPE_CHECKING:
    from ..server import Server

MAX_CLASSIFICATION_ELEMENTS = 1_000_000  # of one batch entry (Triton's bound)


def load_labels(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError as e:
        raise TritonError.internal(f"failed to read label file '{path}': {e.strerror}") from None


def classify(array: np.ndarray, top_n: int, labels: list[str] | None, batched: bool) -> np.ndarray:
    """Top-N entries per batch row (or of the whole tensor) as BYTES "value:index[:label]"."""
    if array.dtype == object or array.dtype.kind not in "iufb":
        kind = "BYTES" if array.dtype == object else str(array.dtype).upper()
        raise TritonError.invalid_arg(  # Triton's words
            f"class result not available for output due to unsupported type '{kind}'")
    rows = array.reshape(array.shape[0], -1) if batched and array.ndim else array.reshape(1, -1)
    if rows.shape[1] > MAX_CLASSIFICATION_ELEMENTS:  # Triton's bound and words: a sort per row
        raise TritonError.invalid_arg("classification output tensor too large")
    k = min(top_n, rows.shape[1])
    out = np.empty((rows.shape[0], k), dtype=object)
    for r, row in enumerate(rows):
        order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        for j, idx in enumerate(order):
            v = row[idx]
            text = f"{float(v):f}" if row.dtype.kind == "f" else str(int(v))
            s = f"{text}:{idx}"
            if labels is not None and idx < len(labels):
                s += f":{labels[idx]}"
            out[r, j] = s.encode()
    return out if batched else out.reshape(-1)


def classifier_for(server: Server, name: str, version: int) -> Callable[[Tensor, int], Tensor]:
    """A function turning an output tensor into its classification, labels included."""

    def run(t: Tensor, top_n: int) -> Tensor:
        lv = server.manager.get(name, version)
        cfg = lv.config
        oc = cfg.output_by_name(t.name)
        labels = None
        if oc is not None and oc.label_filename:
            folder = server.manager.model_folder(name)
            if folder is not None:
                labels = load_labels(folder / oc.label_filename)
        arr = classify(t.as_numpy(), top_n, labels, cfg.max_batch_size > 0)
        return Tensor(t.name, DataType.BYTES, arr.shape, array=arr)

    return run
