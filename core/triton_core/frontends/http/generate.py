"""Triton's generate extension: POST .../generate and .../generate_stream.

The request is one JSON object. Every key but ``id`` and ``parameters`` names
a model input; its value (a JSON scalar or a possibly nested array) becomes
that input in the input's config datatype (strings for BYTES), with the batch
dimension added for models that batch. ``parameters`` become request
parameters. Each response is a JSON object with ``model_name``,
``model_version`` and one key per output: a scalar for a one-element tensor,
else a flat list; BYTES elements as UTF-8 strings.

``generate`` answers exactly one JSON object. ``generate_stream`` answers
Server-Sent Events (``text/event-stream; charset=utf-8``), one ``data:`` line
per response; an error after the stream started is a ``data:`` event with an
``error`` key.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ...dtypes import DataType
from ...errors import TritonError
from ...request import InferenceRequest, InferenceResponse
from ...server import parse_version
from ...tensor import Tensor
from .infer import apply_request_parameters, json_array

if TYPE_CHECKING:
    from .app import HttpFrontEnd

_RESERVED = ("id", "parameters")
_MEANINGFUL = ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout")
_SSE = b"text/event-stream; charset=utf-8"


def _input_tensor(name: str, value: Any, cfg_in: Any, batching: bool) -> Tensor:
    dt: DataType = cfg_in.datatype
    if dt is DataType.BYTES and not isinstance(value, (list, str)):
        value = json.dumps(value)  # a non-string scalar for BYTES: its JSON text
    # the infer endpoint's rules: no truncation of 1.5 into an INT32, bounded nesting
    arr = json_array(name, dt, value)
    dims = list(cfg_in.dims)
    if arr.ndim == 0:
        arr = arr.reshape([1] * max(1, len(dims)))
    elif arr.ndim < len(dims):
        arr = arr.reshape([1] * (len(dims) - arr.ndim) + list(arr.shape))
    if batching and arr.ndim == len(dims):
        arr = arr.reshape([1, *arr.shape])
    return Tensor.from_numpy(name, arr, dt)


def build_request(name: str, version: int | None, body: Any, config: Any) -> InferenceRequest:
    if not isinstance(body, dict):
        raise TritonError.invalid_arg("generate request must be a JSON object")
    params = body.get("parameters", {}) or {}
    if not isinstance(params, dict):
        raise TritonError.invalid_arg("generate request 'parameters' must be a JSON object")
    req = InferenceRequest(model_name=name, model_version=version, id=str(body.get("id", "")))
    batching = config.max_batch_size > 0
    for key, value in body.items():
        if key in _RESERVED:
            continue
        ci = config.input_by_name(key)
        if ci is None:
            raise TritonError.invalid_arg(f"unexpected inference input '{key}' for model '{name}'")
        req.inputs[key] = _input_tensor(key, value, ci, batching)
    # sequence, priority and timeout checked as the infer endpoint checks them ("abc" is no
    # priority); the rest are the model's parameters
    apply_request_parameters(req, params)
    req.parameters = {k: v for k, v in params.items() if k not in _MEANINGFUL}
    return req


def response_json(resp: InferenceResponse, batching: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model_name": resp.model_name, "model_version": str(resp.model_version)}
    if resp.id:
        out["id"] = resp.id
    for t in resp.outputs:
        arr = t.as_numpy()
        flat = arr.reshape(-1)
        if t.datatype is DataType.BYTES:
            vals: list[Any] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                               for v in flat]
        else:
            vals = flat.tolist()
        out[t.name] = vals[0] if len(vals) == 1 else vals
    return out


class StreamResponse:
    """Server-sent events: sent by the front end through ``stream(send)``."""

    def __init__(self, first: tuple[InferenceResponse | None, bool], agen: Any, batching: bool) -> None:
        self.first = first
        self.agen = agen
        self.batching = batching

    @staticmethod
    def _event(obj: dict) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def _encode(self, resp: InferenceResponse | None) -> bytes:
        if resp is None:
            return b""
        if resp.error is not None:
            return self._event({"error": resp.error.message})
        return self._event(response_json(resp, self.batching))

    async def chunks(self) -> Any:
        resp, final = self.first
        try:
            chunk = self._encode(resp)
            if chunk:
                yield chunk
            while not final:
                try:
                    resp, final = await self.agen.__anext__()
                except StopAsyncIteration:
                    break
                except TritonError as e:
                    yield self._event({"error": e.message})
                    break
                chunk = self._encode(resp)
                if chunk:
                    yield chunk
        finally:
            await self.agen.aclose()

    async def stream(self, send: Any) -> None:
        """Over ASGI."""
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", _SSE), (b"cache-control", b"no-cache")]})
        async for chunk in self.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def write_chunked(self, transport: Any, keep_alive: bool) -> None:
        """Over the raw HTTP/1.1 transport: chunked transfer encoding."""
        def write(data: bytes) -> None:
            if transport is not None and not transport.is_closing():
                transport.write(data)

        write(b"HTTP/1.1 200 OK\r\ncontent-type: " + _SSE + b"\r\ncache-control: no-cache\r\n"
              b"transfer-encoding: chunked\r\n" + (b"" if keep_alive else b"connection: close\r\n")
              + b"\r\n")
        async for chunk in self.chunks():
            write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        write(b"0\r\n\r\n")
        if not keep_alive and transport is not None:
            transport.close()


async def handle(app: HttpFrontEnd, req: Any, name: str, version_s: str | None, stream: bool) -> Any:
    from .app import json_response

    srv = app.server
    version = parse_version(version_s)
    cfg = srv.model_config(name, version)
    ireq = build_request(name, version, await req.json(None), cfg)
    batching = cfg.max_batch_size > 0
    agen = srv.infer_stream(ireq)
    try:
        first = await agen.__anext__()  # refusals (bad input, unknown model) raise here
    except BaseException:
        await agen.aclose()
        raise
    if stream:
        return StreamResponse(first, agen, batching)
    last: InferenceResponse | None = None
    resp, final = first
    try:
        while True:
            if resp is not None:
                if resp.error is not None:
                    raise resp.error
                last = resp
            if final:
                break
            resp, final = await agen.__anext__()
    finally:
        await agen.aclose()
    if last is None:
        raise TritonError.internal(f"model '{name}' sent no response")
    return json_response(response_json(last, batching))
