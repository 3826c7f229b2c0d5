"""KServe v2 HTTP/REST front end (with Triton's extensions) as a bare ASGI app.

A hand-rolled router rather than a framework: the infer path is hot and the
route table is small and fixed. ROUTES (at the end) lists every route: its
methods, its path pattern and its handler; a route's restricted-API category
comes from the table both front ends share (frontends/restricted.py). The
dispatcher walks a trie of the patterns' segments (dict lookups, no regexes),
then, as Triton does, answers: no route 404 "Not Found"; a restricted category
without its header "This API is restricted, expecting header 'KEY'"; a method
the route lacks 405 "Method Not Allowed"; else the handler's response.
Served by our httptools protocol (server.py) or any ASGI server, in the
server's one event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import TritonError, as_triton_error
from ...logsettings import VERBOSE
from ...memory.cuda_shm import IPC_HANDLE_SIZE
from ...model_version import model_version
from ...server import Server
from ..classification import classifier_for
from ..closing import close_connections, drain_connections
from ..header_forward import HeaderForward
from ..restricted import http_category
from . import generate as http_generate
from .body import DEFAULT_MAX_INPUT_SIZE, compress, decompress, pick_encoding, read_body
from .infer import build_response, parse_request, raw_request
from .json_codec import decode_json, encode_json
from .plan import MAX_HEADER, RequestPlans, plan_of

if TYPE_CHECKING:
    from .server import HttpLimits

log = logging.getLogger("triton_core")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# How long a stop waits for requests in flight by default (Triton's --exit-timeout-secs).
DRAIN_TIMEOUT_S = 30.0
_JSON = b"application/json"
_OCTET = b"application/octet-stream"
_HEADER_LEN = b"inference-header-content-length"


class _Req:
    """What a handler needs of one HTTP request."""

    __slots__ = ("method", "parts", "headers", "receive", "app", "raw_body")

    def __init__(self, method: str, parts: list[str], headers: dict[bytes, bytes],
                 receive: Receive | None, app: HttpFrontEnd, raw_body: bytes | None = None) -> None:
        self.method = method
        self.parts = parts
        self.headers = headers
        self.receive = receive
        self.app = app
        self.raw_body = raw_body  # already read (within the limit) by our own HTTP protocol

    async def body(self) -> bytes:
        limit = self.app.max_input_size
        if self.raw_body is not None:
            body = self.raw_body
        else:
            cl = self.headers.get(b"content-length")
            try:
                length = int(cl) if cl is not None else None
            except ValueError:
                raise TritonError.invalid_arg("invalid Content-Length header") from None
            assert self.receive is not None
            body = await read_body(self.receive, length, limit)
        enc = self.headers.get(b"content-encoding")
        if enc:
            body = decompress(body, enc.decode("latin-1"), limit)
        return body

    async def json(self, default: Any = None) -> Any:
        body = await self.body()
        if not body.strip():
            return default
        return decode_json(body)


class Response:
    __slots__ = ("status", "body", "content_type", "extra")

    def __init__(self, status: int = 200, body: bytes | list = b"", content_type: bytes = _JSON,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.extra = extra or []


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, encode_json(obj))


def error_response(err: TritonError) -> Response:
    return json_response({"error": err.message}, err.code.http_status)


_OK = Response(200, b"", _JSON)


def _bool_response(ok: bool) -> Response:
    return Response(200 if ok else 400, b"")


class HttpFrontEnd:
    """The HTTP/REST application: `serve()` runs it on the project's own HTTP/1.1 server
    (server.py) in the current loop; as an ASGI app (`__call__`) any ASGI server can host it
    (Ray Serve's proxy, for one)."""

    def __init__(self, server: Server, max_input_size: int = DEFAULT_MAX_INPUT_SIZE,
                 restricted: dict[str, tuple[str, str]] | None = None,
                 limits: HttpLimits | None = None, header_forward_pattern: str = "",
                 *, reuse_port: bool = False) -> None:
        self.server = server
        # SO_REUSEPORT: several front-end processes accept on one port (frontend_processes.py)
        self.reuse_port = reuse_port
        # --http-header-forward-pattern: matching headers become request parameters
        self._forward = (HeaderForward(header_forward_pattern, "--http-header-forward-pattern")
                         if header_forward_pattern else None)
        self.max_input_size = max_input_size
        self.limits = limits  # the transport's bounds (--http-max-header-size, ...): server.py
        self._plans = RequestPlans()
        # --http-restricted-api: category -> (header, value) required
        self.restricted = restricted or {}
        # ... as the dispatcher compares it: (header key as the request has it, value, error)
        self._rules = {category: (key.lower().encode(), value.encode(),
                                  f"This API is restricted, expecting header '{key}'")
                       for category, (key, value) in self.restricted.items()}
        self._server: Any = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_s = DRAIN_TIMEOUT_S  # shutdown(timeout) sets it

    # ASGI ------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            return
        headers = dict(scope["headers"])
        req = _Req(scope["method"], [p for p in scope["path"].split("/") if p], headers, receive, self)
        status, hdrs, body = await self.handle(req, scope["path"])
        if isinstance(body, http_generate.StreamResponse):
            return await body.stream(send)
        hdrs.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, req: _Req, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run one request: (status, headers without content-length, body)."""
        verbose = self.server.log_settings.log_verbose_level > 0
        if verbose:
            log.log(VERBOSE, "HTTP request: %s %s", req.method, path)
        try:
            resp = await self.dispatch(req)
        except Exception as e:  # noqa: BLE001 - a handler bug answers 500, never silence
            resp = error_response(as_triton_error(e, f"HTTP {req.method} {path}"))
        if isinstance(resp, http_generate.StreamResponse):
            return 200, [], resp  # type: ignore[return-value]  # written chunk by chunk
        body = resp.body
        if isinstance(body, list):
            body = b"".join(body)
        hdrs = [(b"content-type", resp.content_type)]
        hdrs.extend(resp.extra)
        # Only successful inference responses are compressed, as Triton does: clients read
        # errors and the other routes' bodies as they come (tritonclient.http.aio turns
        # aiohttp's own decompression off, while aiohttp asks for gzip on every request).
        accept = (req.headers.get(b"accept-encoding")
                  if resp.status == 200 and path.endswith("/infer") else None)
        if accept and body:
            enc = pick_encoding(accept.decode("latin-1"))
            if enc:
                body = compress(body, enc)
                hdrs.append((b"content-encoding", enc.encode()))
        if verbose:
            log.log(VERBOSE, "HTTP response: %s %s -> %d (%d bytes)", req.method, path, resp.status,
                    len(body))
        return resp.status, hdrs, body

    # routing ---------------------------------------------------------------------
    async def dispatch(self, req: _Req) -> Response:
        """Find the route (404), check its restriction (Triton's order: before the
        method), its method (405), then run its handler with the path's parameters."""
        # the trie walk of _match, inlined: this runs for every inference request
        node = _ROOT
        params: list[str] = []
        for seg in req.parts:
            child = node.literals.get(seg)
            if child is None:
                child = node.param
                if child is None:
                    return json_response({"error": "Not Found"}, 404)
                params.append(seg)
            elif node.param is not None:  # a literal or a parameter (model "stats"): rare
                params = []
                child = _match(_ROOT, req.parts, 0, params)
                if child is None:
                    return json_response({"error": "Not Found"}, 404)
                node = child
                break
            node = child
        if not node.handlers:
            return json_response({"error": "Not Found"}, 404)
        if self._rules:
            rule = self._rules.get(node.category)
            if rule is not None and req.headers.get(rule[0]) != rule[1]:
                raise TritonError.unavailable(rule[2])
        handler = node.handlers.get(req.method)
        if handler is None:
            return _method_not_allowed()
        return await handler(self, req, *params)

    # handlers: (req, *the path's parameters) -----------------------------------------
    async def _server_metadata(self, req: _Req) -> Response:
        return json_response(self.server.metadata())

    async def _server_live(self, req: _Req) -> Response:
        return _bool_response(self.server.is_live())

    async def _server_ready(self, req: _Req) -> Response:
        return _bool_response(self.server.is_ready())

    async def _model_metadata(self, req: _Req, name: str, version: str | None = None) -> Response:
        return json_response(self.server.model_metadata(name, version))

    async def _model_ready(self, req: _Req, name: str, version: str | None = None) -> Response:
        return _bool_response(self.server.model_ready(name, version))

    async def _model_config(self, req: _Req, name: str, version: str | None = None) -> Response:
        return json_response(self.server.model_config_json(name, version))

    async def _statistics(self, req: _Req, name: str | None = None,
                          version: str | None = None) -> Response:
        return json_response(await self._across_processes(self.server.statistics, name, version))

    async def _across_processes(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, which with --frontend-processes N > 1 asks the other processes
        and waits on their sockets (up to peers.TIMEOUT_S each): then on a thread, so that a
        slow or stopped peer never holds this process's loop."""
        if self.server.peers is None:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def _generate(self, req: _Req, name: str, version: str | None = None) -> Response:
        return await http_generate.handle(self, req, name, version, False)

    async def _generate_stream(self, req: _Req, name: str, version: str | None = None) -> Response:
        return await http_generate.handle(self, req, name, version, True)

    async def _trace(self, req: _Req, name: str | None = None) -> Response:
        if req.method == "GET":
            return json_response(self.server.trace_setting(name))
        body = await req.json({})
        if not isinstance(body, dict):
            raise TritonError.invalid_arg("the trace setting request must be a JSON object")
        return json_response(
            await self._across_processes(self.server.update_trace_setting, name, body))

    async def _get_logging(self, req: _Req) -> Response:
        return json_response(self.server.log_settings.as_dict())

    async def _set_logging(self, req: _Req) -> Response:
        body = await req.json({})
        if not isinstance(body, dict):
            raise TritonError.invalid_arg("logging settings must be a JSON object")
        return json_response(await self._across_processes(self.server.log_settings.update, body))

    def _cuda_shm(self) -> Any:
        reg = self.server.cuda_shm_registry
        if reg is None:
            raise TritonError.unsupported(
                "client shared memory is disabled: start the server with --allow-client-shm=true")
        return reg

    async def _cuda_shm_status(self, req: _Req, region: str | None = None) -> Response:
        return json_response(self._cuda_shm().status(region))

    async def _cuda_shm_register(self, req: _Req, region: str) -> Response:
        reg = self._cuda_shm()
        body = await req.json({})
        raw = body.get("raw_handle") if isinstance(body, dict) else None
        if raw is None:  # Triton's words
            raise TritonError.invalid_arg("Shared memory register request has no 'raw_handle' field")
        b64 = raw.get("b64") if isinstance(raw, dict) else None
        if not isinstance(b64, str):
            raise TritonError.invalid_arg("'raw_handle' must be a JSON object with a string 'b64'")
        for key in ("byte_size", "device_id"):
            v = body.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise TritonError.invalid_arg(
                    f"cuda shared memory register request: '{key}' must be an unsigned integer")
        try:
            handle = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            handle = b""
        if len(handle) != IPC_HANDLE_SIZE:
            raise TritonError.invalid_arg(
                "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t")
        await asyncio.to_thread(reg.register, region, handle, body["device_id"], body["byte_size"])
        return Response(200, b"")

    async def _cuda_shm_unregister(self, req: _Req, region: str | None = None) -> Response:
        reg = self._cuda_shm()
        if region is None:
            await asyncio.to_thread(reg.unregister_all)
        else:
            await asyncio.to_thread(reg.unregister, region)
        return Response(200, b"")

    async def _infer(self, req: _Req, name: str, version_s: str | None = None) -> Response:
        srv = self.server
        version = model_version(version_s)
        body = await req.body()
        mv = memoryview(body)
        hlen_raw = req.headers.get(_HEADER_LEN)
        shm = srv.shm_io
        if hlen_raw is not None:
            try:
                hlen = int(hlen_raw)
            except ValueError:
                raise TritonError.invalid_arg(
                    "Inference-Header-Content-Length is not an integer") from None
            if hlen < 0 or hlen > len(body):
                raise TritonError.invalid_arg(
                    f"Inference-Header-Content-Length {hlen} is larger than the request body "
                    f"({len(body)} bytes)")
            if hlen == 0:
                cfg = srv.model_config(name, version)
                ireq = raw_request(name, version, mv, cfg)
                self._forward_headers(req, ireq)
                resp = await srv.infer_async(ireq, _DECOUPLED)
                header, chunks = build_response(resp, ireq, True, shm, self._classifier(name, resp))
                return _infer_response(header, chunks)
            header_bytes = mv[:hlen]
            binary = mv[hlen:]
        else:
            header_bytes = mv
            binary = mv[len(body):]
        hb = bytes(header_bytes)
        key = (name, version_s, hb)
        plan = self._plans.get(key) if len(hb) <= MAX_HEADER else None
        ireq = plan.build(name, version, binary, shm) if plan is not None else None
        if ireq is not None:
            binary_default = plan.binary_default  # type: ignore[union-attr]
        else:
            header = decode_json(hb)
            ireq, binary_default = parse_request(name, version, header, binary, shm)
            if plan is None and len(hb) <= MAX_HEADER:
                self._plans.put(key, plan_of(header, ireq, binary_default))
        if shm is not None:  # after plan_of: a cached plan must hold no lease
            shm.bind_outputs(ireq)
        self._forward_headers(req, ireq)
        resp = await srv.infer_async(ireq, _DECOUPLED)
        header_out, chunks = build_response(resp, ireq, binary_default, shm,
                                            self._classifier(name, resp))
        return _infer_response(header_out, chunks)

    def _forward_headers(self, req: _Req, ireq: Any) -> None:
        if self.server.traces.exporter is not None:  # opentelemetry: continue the client's trace
            tp = req.headers.get(b"traceparent")
            if tp:
                ireq.traceparent = tp.decode("latin-1")
        if self._forward is not None:
            ireq.parameters = self._forward.forward(
                ireq.parameters, ((k.decode("latin-1"), v.decode("latin-1"))
                                  for k, v in req.headers.items()))

    def _classifier(self, name: str, resp: Any) -> Any:
        return classifier_for(self.server, name, resp.model_version)

    async def _repository_index(self, req: _Req) -> Response:
        body = await req.json({})
        if not isinstance(body, dict):
            raise TritonError.invalid_arg("the request body must be a JSON object")
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise TritonError.invalid_arg("Invalid value for 'ready': expected a boolean")
        return json_response(self.server.repository_index(ready))

    async def _load(self, req: _Req, name: str) -> Response:
        params = await _repository_parameters(req)
        config = params.get("config")
        if config is not None and not isinstance(config, (str, dict)):
            raise TritonError.invalid_arg("'config' parameter must be a JSON string")
        files = {k[5:]: v for k, v in params.items() if k.startswith("file:")}
        for k, v in files.items():
            if not isinstance(v, str):
                raise TritonError.invalid_arg(f"file '{k}' must be base64 text")
        await asyncio.to_thread(self.server.load_model, name, config, files or None)
        return Response(200, b"")

    async def _unload(self, req: _Req, name: str) -> Response:
        params = await _repository_parameters(req)
        dep = params.get("unload_dependents", False)
        if not isinstance(dep, bool):
            raise TritonError.invalid_arg("'unload_dependents' must be a boolean")
        await asyncio.to_thread(self.server.unload_model, name, dep)
        return Response(200, b"")

    def _shm(self) -> Any:
        reg = self.server.shm_registry
        if reg is None:
            raise TritonError.unsupported(
                "client shared memory is disabled: start the server with --allow-client-shm=true")
        return reg

    async def _shm_status(self, req: _Req, region: str | None = None) -> Response:
        return json_response(self._shm().status(region))

    async def _shm_register(self, req: _Req, region: str) -> Response:
        reg = self._shm()
        body = await req.json({})
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            raise TritonError.invalid_arg("register needs a JSON body with 'key' and 'byte_size'")
        await self._across_processes(reg.register, region, body["key"], body.get("offset", 0),
                                     body.get("byte_size"))
        return Response(200, b"")

    async def _shm_unregister(self, req: _Req, region: str | None = None) -> Response:
        reg = self._shm()
        if region is None:
            await self._across_processes(reg.unregister_all)
        else:
            await self._across_processes(reg.unregister, region)
        return Response(200, b"")

    # serving ---------------------------------------------------------------------
    async def serve(self, host: str = "0.0.0.0", port: int = 8000, backlog: int = 2048) -> None:
        """Serve on host:port until shutdown(); our httptools protocol (one write per response)."""
        from .server import serve_http

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server, connections = await serve_http(self, host, port, backlog, self.limits,
                                               reuse_port=self.reuse_port)
        self._server = server
        self.server.engine_loop.attach(self._loop)  # process-backed models run on this loop
        try:
            await self._stop.wait()
        finally:
            self.server.engine_loop.detach(self._loop)
            server.close()  # no new connections; requests in flight get their responses
            if not await drain_connections(connections, _busy, self._drain_s):
                log.warning("HTTP: requests still in flight after %g s; closing their "
                            "connections", self._drain_s)
            await close_connections(connections)
            await server.wait_closed()
            self._server = None

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop serving: requests in flight get up to ``timeout`` seconds (default
        DRAIN_TIMEOUT_S, Triton's default --exit-timeout-secs) to be answered."""
        if timeout is not None:
            self._drain_s = max(0.0, timeout)
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)  # may come from another thread


async def _repository_parameters(req: _Req) -> dict[str, Any]:
    """The "parameters" of a load or unload request's JSON body."""
    body = await req.json({})
    if not isinstance(body, dict):
        raise TritonError.invalid_arg("the request body must be a JSON object")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise TritonError.invalid_arg("'parameters' must be a JSON object")
    return params


# The route table ---------------------------------------------------------------------
# A pattern's segments are literals or {parameters}; "[/versions/{version}]" is a model
# route's optional version. The handler (an HttpFrontEnd method) gets the request and the
# parameters' values in order. A route's restricted-API category is the one
# frontends/restricted.py's CATEGORIES gives its pattern (both front ends share that table).

@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    pattern: str
    handler: str


_GET, _POST, _ANY = ("GET",), ("POST",), ("GET", "POST")
_MODEL = "/v2/models/{name}[/versions/{version}]"
_SHM = "/v2/systemsharedmemory"
_CUDA = "/v2/cudasharedmemory"

ROUTES: tuple[Route, ...] = (
    Route(_GET, "/v2", "_server_metadata"),
    Route(_GET, "/v2/health/live", "_server_live"),
    Route(_GET, "/v2/health/ready", "_server_ready"),
    Route(_GET, "/v2/models/stats", "_statistics"),
    Route(_GET, _MODEL, "_model_metadata"),
    Route(_GET, f"{_MODEL}/ready", "_model_ready"),
    Route(_GET, f"{_MODEL}/config", "_model_config"),
    Route(_GET, f"{_MODEL}/stats", "_statistics"),
    Route(_POST, f"{_MODEL}/infer", "_infer"),
    Route(_POST, f"{_MODEL}/generate", "_generate"),
    Route(_POST, f"{_MODEL}/generate_stream", "_generate_stream"),
    Route(_ANY, "/v2/models/{name}/trace/setting", "_trace"),
    Route(_ANY, "/v2/trace/setting", "_trace"),
    Route(_GET, "/v2/logging", "_get_logging"),
    Route(_POST, "/v2/logging", "_set_logging"),
    Route(_POST, "/v2/repository/index", "_repository_index"),
    Route(_POST, "/v2/repository/models/{name}/load", "_load"),
    Route(_POST, "/v2/repository/models/{name}/unload", "_unload"),
    Route(_GET, f"{_SHM}/status", "_shm_status"),
    Route(_GET, f"{_SHM}/region/{{region}}/status", "_shm_status"),
    Route(_POST, f"{_SHM}/region/{{region}}/register", "_shm_register"),
    Route(_POST, f"{_SHM}/unregister", "_shm_unregister"),
    Route(_POST, f"{_SHM}/region/{{region}}/unregister", "_shm_unregister"),
    Route(_GET, f"{_CUDA}/status", "_cuda_shm_status"),
    Route(_GET, f"{_CUDA}/region/{{region}}/status", "_cuda_shm_status"),
    Route(_POST, f"{_CUDA}/region/{{region}}/register", "_cuda_shm_register"),
    Route(_POST, f"{_CUDA}/unregister", "_cuda_shm_unregister"),
    Route(_POST, f"{_CUDA}/region/{{region}}/unregister", "_cuda_shm_unregister"),
)


Handler = Callable[..., Awaitable[Response]]  # (HttpFrontEnd, _Req, *parameters)


class _Node:
    """A path segment of the route trie: the inner node of a route is matched by dict
    lookups, one per segment (no list of patterns tried in turn)."""

    __slots__ = ("literals", "param", "category", "handlers")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None  # a {parameter} segment
        self.category = ""  # of the route ending here
        self.handlers: dict[str, Handler] = {}  # method -> HttpFrontEnd method; {} for none


def _expand(pattern: str) -> list[str]:
    if "[" not in pattern:
        return [pattern]
    head, _, rest = pattern.partition("[")
    optional, _, tail = rest.partition("]")
    return [head + tail, head + optional + tail]


def _build(routes: tuple[Route, ...]) -> _Node:
    root = _Node()
    for route in routes:
        category = http_category(route.pattern)  # a route without one fails at import
        handler = getattr(HttpFrontEnd, route.handler)
        for pattern in _expand(route.pattern):
            node = root
            for seg in pattern.strip("/").split("/"):
                if seg.startswith("{"):
                    node.param = node.param or _Node()
                    node = node.param
                else:
                    node = node.literals.setdefault(seg, _Node())
            assert not node.category or node.category == category, pattern
            node.category = category
            for method in route.methods:
                assert method not in node.handlers, (method, pattern)
                node.handlers[method] = handler
    return root


def _match(node: _Node, parts: list[str], i: int, params: list[str]) -> _Node | None:
    """The node of the route ``parts[i:]`` names below ``node`` (appending its parameters'
    values to ``params``), or None (dispatch inlines it). A literal segment wins over a parameter; where the
    literal leads nowhere the parameter is tried (/v2/models/stats/ready: model "stats")."""
    n = len(parts)
    while i < n:
        seg = parts[i]
        child = node.literals.get(seg)
        if child is not None and node.param is not None:
            mark = len(params)
            found = _match(child, parts, i + 1, params)
            if found is not None:
                return found
            del params[mark:]
            child = None
        if child is None:
            child = node.param
            if child is None:
                return None
            params.append(seg)
        node = child
        i += 1
    return node if node.handlers else None


_ROOT = _build(ROUTES)


def _busy(conn: Any) -> bool:
    """A connection (http.server.HttpConnection) is answering or holding a request (one
    whose response waits only for the client to read it is not: close_connections
    handles that client)."""
    return conn.responding or bool(conn.queue)


def _method_not_allowed() -> Response:
    return json_response({"error": "Method Not Allowed"}, 405)


def _infer_response(header: bytes, chunks: list) -> Response:
    if not chunks:
        return Response(200, header, _JSON)
    return Response(200, [header, *chunks], _OCTET,
                    [(b"inference-header-content-length", str(len(header)).encode())])


# Triton's words (http_server.cc) for /infer on a decoupled model
_DECOUPLED = "HTTP end point doesn't support models with decoupled transaction policy"
