"""Gather / scatter helpers for backends that run several requests as one batch.

Ragged inputs, batch inputs and batch outputs (Triton's ragged batching) are in batch_io.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from .batch_io import gather_ragged
from .errors import TritonError
from .request import InferenceRequest, InferenceResponse

log = logging.getLogger("triton_core")


def batch_sizes(requests: Sequence[InferenceRequest], name: str) -> list[int]:
    """The first-dimension size of input ``name`` in each request."""
    return [r.inputs[name].shape[0] if r.inputs[name].shape else 1 for r in requests]


def gather_input(requests: Sequence[InferenceRequest], name: str, ragged: bool = False) -> np.ndarray:
    """Input ``name`` of every request, concatenated along the batch dimension.

    One request: its array as is (a view, no copy). ``ragged`` (the input allows ragged
    batches, batch_io.ragged_inputs): every request's elements flattened into one 1-D array.
    """
    if ragged:
        return gather_ragged(requests, name)
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


def run_each_on_failure(
    requests: Sequence[InferenceRequest],
    batched: bool,
    run: Callable[[list[InferenceRequest]], list[InferenceResponse]],
    on_error: Callable[[InferenceRequest, TritonError], InferenceResponse],
) -> list[InferenceResponse]:
    """Run ``requests`` as one batch (``batched``; else each alone) with ``run``; a batch that
    raises a TritonError runs again one request at a time, so one bad request fails alone
    (``on_error`` makes its error response) and the others are answered."""
    if not batched:
        out: list[InferenceResponse] = []
        for r in requests:
            out.extend(run_each_on_failure([r], True, run, on_error))
        return out
    group = list(requests)
    if not group:
        return []
    try:
        return run(group)
    except TritonError as e:
        if len(group) == 1:
            return [on_error(group[0], e)]
        log.debug("a batch of %d requests failed (%s); running each alone", len(group), e.message)
        return run_each_on_failure(group, False, run, on_error)
