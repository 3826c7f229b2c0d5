"""The native gRPC engine's listener and method table (see h2_connection.py)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ngh2
from tritonclient.grpc import service_pb2 as pb

from ...errors import TritonError
from ..closing import close_connections
from ..restricted import INFERENCE_SERVICE, grpc_category
from . import health, wire
from .h2_connection import GrpcConnection
from .wire import ZLIB_LEVELS

if TYPE_CHECKING:
    from .service import GrpcOptions, InferenceServicer

log = logging.getLogger("triton_core")

SERVICE = INFERENCE_SERVICE


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    handler: Callable[[Any, Any], Awaitable[Any]]
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]
    streaming: bool
    category: str | None


def _serialize(msg: Any) -> bytes:
    return msg.SerializeToString()


def routes_for(servicer: InferenceServicer,
               health_check: Callable[[str, Any], Awaitable[int]]) -> dict[bytes, Route]:
    out: dict[bytes, Route] = {}
    for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        cls = getattr(pb, m.input_type.name)
        path = f"/{SERVICE}/{m.name}"
        out[path.encode()] = Route(
            m.name, getattr(servicer, m.name), cls.FromString, _serialize,
            m.client_streaming, grpc_category(path))
    path = f"/{health.SERVICE_NAME}/Check"
    out[path.encode()] = Route(
        "Check", health_check, health.decode_request, health.encode_response, False,
        grpc_category(path))
    return out


def ssl_context(opts: GrpcOptions) -> ssl.SSLContext | None:
    if not opts.use_ssl:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(opts.ssl_server_cert, opts.ssl_server_key)
        if opts.ssl_root_cert:
            ctx.load_verify_locations(opts.ssl_root_cert)
    except (OSError, ssl.SSLError) as e:
        raise TritonError.invalid_arg(f"cannot use the SSL files: {e}") from None
    if opts.ssl_mutual_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


class H2Server:
    """Listens, owns the connections, and knows every call in flight."""

    def __init__(self, servicer: InferenceServicer, options: GrpcOptions,
                 health_check: Callable[[str, Any], Awaitable[int]]) -> None:
        self.options = options
        self.routes = routes_for(servicer, health_check)
        # a -bin key's value is compared decoded (its UTF-8 bytes), as Triton compares the bytes
        self.restricted = {cat: (key.lower().encode("latin-1"),
                                 value.encode() if key.lower().endswith("-bin") else value.encode("latin-1"))
                           for cat, (key, value) in options.restricted.items()}
        self._messages = {cat: f"This protocol is restricted, expecting header '{key}'"
                          for cat, (key, _) in options.restricted.items()}
        self.gzip_level = ZLIB_LEVELS.get(options.compression_level, 0)
        # the connections acknowledge received data themselves: a streaming call's only as
        # its handler reads it (flow control holds back a client that sends faster)
        self.h2_config = ngh2.Configuration(max_inbound_header_list_size=1 << 20,
                                            auto_window_update=False)
        self.connections: set[GrpcConnection] = set()
        self.calls: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    def refusal(self, route: Route, headers: tuple) -> str | None:
        """--grpc-restricted-protocol: the message when the call lacks the header."""
        rule = self.restricted.get(route.category) if route.category else None
        if rule is None:
            return None
        key, value = rule
        binary = key.endswith(b"-bin")
        for k, v in headers:
            if k == key and (wire.decode_binary(v) if binary else v) == value:
                return None
        return self._messages[route.category]  # type: ignore[index]

    def track(self, task: asyncio.Task) -> None:
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        ctx = ssl_context(self.options)
        try:
            self._server = await loop.create_server(
                lambda: GrpcConnection(self), host, port, ssl=ctx, reuse_address=True, backlog=1024,
                reuse_port=self.options.reuse_port or None)
        except OSError as e:
            raise TritonError.unavailable(
                f"failed to start gRPC service at {host}:{port}: {e.strerror}") from None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float | None) -> None:
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.close()
        for c in list(self.connections):
            c.go_away()
        await self._drain(grace)
        left = list(self.calls)
        for t in left:
            t.cancel()
        if left:  # their status (UNAVAILABLE) goes out before the connections close
            await asyncio.wait(left, timeout=1.0)
        for c in list(self.connections):
            c.flush()
        await close_connections(self.connections)
        await srv.wait_closed()

    async def _drain(self, grace: float | None) -> None:
        """Waits up to ``grace`` for the calls in flight: those running, and those whose
        request is still arriving (they have no task yet)."""
        loop = asyncio.get_running_loop()
        end = None if grace is None else loop.time() + grace
        while True:
            arriving = any(s.task is None and not s.state.closed
                           for c in list(self.connections) for s in c.streams.values())
            if not self.calls and not arriving:
                return
            timeout = None if end is None else end - loop.time()
            if timeout is not None and timeout <= 0:
                return
            if arriving:  # no event tells when a request is complete: look again soon
                timeout = 0.02 if timeout is None else min(timeout, 0.02)
            if self.calls:
                await asyncio.wait(list(self.calls), timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(timeout)  # type: ignore[arg-type]

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
