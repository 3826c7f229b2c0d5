"""Shared parametrisation of the suite's tests (not a test module)."""

from __future__ import annotations

import pytest

from ..harness import grpc_frontend_class

PROTOCOLS = ("inproc", "http", "grpc")


def client_for(h, protocol: str):
    """The triton_harness's client for ``protocol``; skips gRPC when the core has no gRPC front end."""
    if protocol == "grpc":
        cls, reason = grpc_frontend_class()
        if cls is None:
            pytest.skip(reason)
    return h.client(protocol)


def batch_shapes(h, inner: int) -> list[tuple[int, ...]]:
    """Shapes of an identity request: one row, several rows, the largest batch."""
    caps = h.caps
    if caps.batching:
        return [(1, inner), (3, inner), (caps.max_batch_size, inner)]
    return [(inner,)]
