"""The native gRPC engine's status codes (frontends/grpc/status.py) are grpcio's, without it."""

from __future__ import annotations

import grpc

from triton_core.errors import ErrorCode
from triton_core.frontends.grpc.status import StatusCode


def test_every_code_has_grpcios_name_and_value():
    assert [(c.name, c.value) for c in StatusCode] == [(c.name, c.value) for c in grpc.StatusCode]
    assert all(c.grpcio() is grpc.StatusCode[c.name] for c in StatusCode)
    assert StatusCode.UNAVAILABLE.number == 14


def test_every_triton_error_code_maps_to_one():
    for code in ErrorCode:
        assert StatusCode[code.grpc_status_name].grpcio() is getattr(grpc.StatusCode, code.grpc_status_name)
