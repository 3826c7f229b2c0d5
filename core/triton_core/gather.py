"""Gather / scatter helpers for backends that run several requests as one batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .request import InferenceRequest


def batch_sizes(requests: Sequence[InferenceRequest], name: str) -> list[int]:
    """The first-dimension size of input ``name`` in each request."""
    return [r.inputs[name].shape[0] if r.inputs[name].shape else 1 for r in requests]


def gather_input(requests: Sequence[InferenceRequest], name: str) -> np.ndarray:
    """Input ``name`` of every request, concatenated along the batch dimension.

    One request: its array as is (a view, no copy).
    """
    arrays = [r.inputs[name].as_numpy() for r in requests]
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays, axis=0)


def scatter_output(array: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Split a batched output back per request (views, no copy)."""
    if len(sizes) == 1:
        return [array]
    bounds = np.cumsum(sizes)[:-1]
    return list(np.split(array, bounds, axis=0))
