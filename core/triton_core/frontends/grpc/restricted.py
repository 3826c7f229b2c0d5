"""--grpc-restricted-protocol on grpc.aio: an interceptor refusing the RPCs of a restricted
category (frontends/restricted.py) that lack the header (metadata) key=value."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from ..restricted import grpc_category


class RestrictedProtocols(grpc.aio.ServerInterceptor):
    """Refuses an RPC whose category is restricted unless the call carries key=value."""

    def __init__(self, rules: dict[str, tuple[str, str]]) -> None:
        self.rules = rules

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        category = grpc_category(details.method)
        rule = self.rules.get(category) if category else None
        if rule is None:
            return await continuation(details)
        key, value = rule
        name = key.lower()
        # grpc.aio gives a -bin key's value decoded, as bytes
        expected: str | bytes = value.encode() if name.endswith("-bin") else value
        for k, v in details.invocation_metadata or ():
            if k == name and v == expected:
                return await continuation(details)
        message = f"This protocol is restricted, expecting header '{key}'"

        async def deny_unary(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)

        async def deny_stream(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)

        if details.method.endswith("/ModelStreamInfer"):
            return grpc.stream_stream_rpc_method_handler(deny_stream)
        return grpc.unary_unary_rpc_method_handler(deny_unary)
