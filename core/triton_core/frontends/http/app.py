"""KServe v2 HTTP/REST front end (with Triton's extensions) as a bare ASGI app.

A hand-rolled router rather than a framework: the infer path is hot and the
route table is small and fixed. Served by uvicorn (httptools, uvloop) in the
server's one event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...errors import ErrorCode, TritonError, as_triton_error
from ...logsettings import VERBOSE
from ...server import Server, parse_version
from ..classification import classifier_for
from ..closing import close_connections, drain_connections
from . import generate as http_generate
from .body import DEFAULT_MAX_INPUT_SIZE, compress, decompress, pick_encoding, read_body
from .infer import build_response, parse_request, raw_request
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
        return parse_json(body)


def parse_json(body: bytes) -> Any:
    """A request's JSON; malformed or too deeply nested JSON is the client's error (400).

    The depth limit is the one of Python's JSON parser (its recursion guard, about a
    thousand levels): deeper JSON raises RecursionError, which must not become a 500.
    """
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TritonError.invalid_arg(f"failed to parse the request JSON buffer: {e}") from None
    except RecursionError:
        raise TritonError.invalid_arg(
            "failed to parse the request JSON buffer: the JSON is nested too deeply") from None


class Response:
    __slots__ = ("status", "body", "content_type", "extra")

    def __init__(self, status: int = 200, body: bytes | list = b"", content_type: bytes = _JSON,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.extra = extra or []


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode())


def error_response(err: TritonError) -> Response:
    return json_response({"error": err.message}, err.code.http_status)


_OK = Response(200, b"", _JSON)


def _bool_response(ok: bool) -> Response:
    return Response(200 if ok else 400, b"")


class HttpFrontEnd:
    """The ASGI application. `serve()` runs it on uvicorn inside the current loop."""

    def __init__(self, server: Server, max_input_size: int = DEFAULT_MAX_INPUT_SIZE,
                 restricted: dict[str, tuple[str, str]] | None = None,
                 limits: HttpLimits | None = None) -> None:
        self.server = server
        self.max_input_size = max_input_size
        self.limits = limits  # the transport's bounds (--http-max-header-size, ...): server.py
        self._plans = RequestPlans()
        # --http-restricted-api: category -> (header, value) required
        self.restricted = restricted or {}
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
        except _MethodNotAllowed:
            resp = _method_not_allowed()
        except Exception as e:  # noqa: BLE001 - a handler bug answers 500, never silence
            resp = error_response(as_triton_error(e, f"HTTP {req.method} {path}"))
        if isinstance(resp, http_generate.StreamResponse):
            return 200, [], resp  # type: ignore[return-value]  # written chunk by chunk
        body = resp.body
        if isinstance(body, list):
            body = b"".join(body)
        hdrs = [(b"content-type", resp.content_type)]
        hdrs.extend(resp.extra)
        accept = req.headers.get(b"accept-encoding")
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
        p = req.parts
        m = req.method
        n = len(p)
        if n == 0 or p[0] != "v2":
            return json_response({"error": "Not Found"}, 404)
        if n == 1:
            self._check_restricted(req, "metadata")
            return self._get(req) or json_response(self.server.metadata())
        head = p[1]
        if head == "models":
            return await self._models(req)
        if head == "health" and n == 3:
            self._check_restricted(req, "health")
            self._get(req, raise_=True)
            if p[2] == "live":
                return _bool_response(self.server.is_live())
            if p[2] == "ready":
                return _bool_response(self.server.is_ready())
        if head == "repository":
            return await self._repository(req)
        if head == "logging" and n == 2:
            self._check_restricted(req, "logging")
            if m == "GET":
                return json_response(self.server.log_settings.as_dict())
            if m == "POST":
                body = await req.json({})
                if not isinstance(body, dict):
                    raise TritonError.invalid_arg("logging settings must be a JSON object")
                return json_response(self.server.log_settings.update(body))
            return _method_not_allowed()
        if head == "systemsharedmemory":
            return await self._system_shm(req)
        if head == "cudasharedmemory":
            self._check_restricted(req, "shared-memory")
            raise TritonError.unsupported(
                "CUDA shared memory is not supported by this server (no CUDA device support in "
                "triton-core yet)")
        if head == "trace":
            self._check_restricted(req, "trace")
            raise TritonError.unsupported("the trace extension is not supported yet")
        return json_response({"error": "Not Found"}, 404)

    def _get(self, req: _Req, raise_: bool = False) -> Response | None:
        if req.method != "GET":
            if raise_:
                raise _MethodNotAllowed()
            return _method_not_allowed()
        return None

    def _check_restricted(self, req: _Req, category: str) -> None:
        rule = self.restricted.get(category)
        if rule is None:
            return
        key, value = rule
        if req.headers.get(key.lower().encode()) != value.encode():
            raise TritonError.unavailable(
                f"This API is restricted, expecting header '{key}'")

    async def _models(self, req: _Req) -> Response:
        p = req.parts
        n = len(p)
        srv = self.server
        if n == 3 and p[2] == "stats":
            self._check_restricted(req, "statistics")
            return self._get(req) or json_response(srv.statistics())
        if n < 3:
            return json_response({"error": "Not Found"}, 404)
        name = p[2]
        version: str | None = None
        rest = p[3:]
        if len(rest) >= 2 and rest[0] == "versions":
            version = rest[1]
            rest = rest[2:]
        if not rest:
            self._check_restricted(req, "metadata")
            return self._get(req) or json_response(srv.model_metadata(name, version))
        if rest == ["trace", "setting"] and version is None:
            self._check_restricted(req, "trace")
            raise TritonError.unsupported("the trace extension is not supported yet")
        if len(rest) != 1:
            return json_response({"error": "Not Found"}, 404)
        action = rest[0]
        if action == "infer":
            if req.method != "POST":
                return _method_not_allowed()
            self._check_restricted(req, "inference")
            return await self._infer(req, name, version)
        if action == "ready":
            self._check_restricted(req, "health")
            return self._get(req) or _bool_response(srv.model_ready(name, version))
        if action == "config":
            self._check_restricted(req, "model-config")
            return self._get(req) or json_response(srv.model_config_json(name, version))
        if action == "stats":
            self._check_restricted(req, "statistics")
            return self._get(req) or json_response(srv.statistics(name, version))
        if action in ("generate", "generate_stream"):
            if req.method != "POST":
                return _method_not_allowed()
            self._check_restricted(req, "inference")
            return await http_generate.handle(self, req, name, version, action == "generate_stream")
        return json_response({"error": "Not Found"}, 404)

    async def _infer(self, req: _Req, name: str, version_s: str | None) -> Response:
        srv = self.server
        version = parse_version(version_s)
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
            header = parse_json(hb)
            ireq, binary_default = parse_request(name, version, header, binary, shm)
            if plan is None and len(hb) <= MAX_HEADER:
                self._plans.put(key, plan_of(header, ireq, binary_default))
        if shm is not None:  # after plan_of: a cached plan must hold no lease
            shm.bind_outputs(ireq)
        resp = await srv.infer_async(ireq, _DECOUPLED)
        header_out, chunks = build_response(resp, ireq, binary_default, shm,
                                            self._classifier(name, resp))
        return _infer_response(header_out, chunks)

    def _classifier(self, name: str, resp: Any) -> Any:
        return classifier_for(self.server, name, resp.model_version)

    async def _repository(self, req: _Req) -> Response:
        p = req.parts
        srv = self.server
        self._check_restricted(req, "model-repository")
        if len(p) == 3 and p[2] == "index":
            if req.method != "POST":
                return _method_not_allowed()
            body = await req.json({})
            if not isinstance(body, dict):
                raise TritonError.invalid_arg("the request body must be a JSON object")
            ready = body.get("ready", False)
            if not isinstance(ready, bool):
                raise TritonError.invalid_arg("'ready' must be a boolean")
            return json_response(srv.repository_index(ready))
        if len(p) == 5 and p[2] == "models" and p[4] in ("load", "unload"):
            if req.method != "POST":
                return _method_not_allowed()
            name = p[3]
            body = await req.json({})
            if not isinstance(body, dict):
                raise TritonError.invalid_arg("the request body must be a JSON object")
            params = body.get("parameters") or {}
            if not isinstance(params, dict):
                raise TritonError.invalid_arg("'parameters' must be a JSON object")
            if p[4] == "load":
                config = params.get("config")
                if config is not None and not isinstance(config, (str, dict)):
                    raise TritonError.invalid_arg("'config' parameter must be a JSON string")
                files = {k[5:]: v for k, v in params.items() if k.startswith("file:")}
                for k, v in files.items():
                    if not isinstance(v, str):
                        raise TritonError.invalid_arg(f"file '{k}' must be base64 text")
                await asyncio.to_thread(srv.load_model, name, config, files or None)
            else:
                dep = params.get("unload_dependents", False)
                if not isinstance(dep, bool):
                    raise TritonError.invalid_arg("'unload_dependents' must be a boolean")
                await asyncio.to_thread(srv.unload_model, name, dep)
            return Response(200, b"")
        return json_response({"error": "Not Found"}, 404)

    async def _system_shm(self, req: _Req) -> Response:
        self._check_restricted(req, "shared-memory")
        reg = self.server.shm_registry
        if reg is None:
            raise TritonError.unsupported(
                "client shared memory is disabled: start the server with --allow-client-shm=true")
        p = req.parts  # v2 systemsharedmemory [region R] (status|register|unregister)
        region: str | None = None
        if len(p) == 5 and p[2] == "region":
            region, action = p[3], p[4]
        elif len(p) == 3:
            action = p[2]
        else:
            return json_response({"error": "Not Found"}, 404)
        if action == "status":
            return self._get(req) or json_response(reg.status(region))
        if req.method != "POST":
            return _method_not_allowed()
        if action == "register" and region is not None:
            body = await req.json({})
            if not isinstance(body, dict) or not isinstance(body.get("key"), str):
                raise TritonError.invalid_arg("register needs a JSON body with 'key' and 'byte_size'")
            reg.register(region, body["key"], body.get("offset", 0), body.get("byte_size"))
            return Response(200, b"")
        if action == "unregister":
            if region is None:
                reg.unregister_all()
            else:
                reg.unregister(region)
            return Response(200, b"")
        return json_response({"error": "Not Found"}, 404)

    # serving ---------------------------------------------------------------------
    async def serve(self, host: str = "0.0.0.0", port: int = 8000, backlog: int = 2048) -> None:
        """Serve on host:port until shutdown(); our httptools protocol (one write per response)."""
        from .server import WaitingClients, serve_http

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        waiting = WaitingClients()  # tells the core when requests wait to be read
        server, connections = await serve_http(self, host, port, backlog, waiting, self.limits)
        self._server = server
        self.server.waiting_checks.append(waiting)
        try:
            await self._stop.wait()
        finally:
            self.server.waiting_checks.remove(waiting)
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


def _busy(conn: Any) -> bool:
    """A connection (http.server.HttpConnection) is answering or holding a request (one
    whose response waits only for the client to read it is not: close_connections
    handles that client)."""
    return conn.responding or bool(conn.queue)


class _MethodNotAllowed(TritonError):
    def __init__(self) -> None:
        super().__init__(ErrorCode.INVALID_ARG, "Method Not Allowed")


def _method_not_allowed() -> Response:
    return json_response({"error": "Method Not Allowed"}, 405)


def _infer_response(header: bytes, chunks: list) -> Response:
    if not chunks:
        return Response(200, header, _JSON)
    return Response(200, [header, *chunks], _OCTET,
                    [(b"inference-header-content-length", str(len(header)).encode())])


# Triton's words (http_server.cc) for /infer on a decoupled model
_DECOUPLED = "HTTP end point doesn't support models with decoupled transaction policy"
