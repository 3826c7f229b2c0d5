"""Reading an HTTP request body within limits, and (de)compressing bodies.

The size limit is enforced from Content-Length before reading and while
reading chunked bodies; decompression is bounded too (no decompression bombs).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import TritonError

DEFAULT_MAX_INPUT_SIZE = 64 * 1024 * 1024


def _too_large(limit: int, json_size: int | None = None) -> TritonError:
    """The refusal of a body over --http-max-input-size; ``json_size``: the body is all
    JSON (no binary-tensor section) of that many bytes, which Triton words its own way."""
    if json_size is not None:
        return TritonError.invalid_arg(
            f"request JSON size of {json_size} bytes exceeds the maximum allowed input size of "
            f"{limit} bytes. Use --http-max-input-size to increase the limit.")
    return TritonError.invalid_arg(
        f"request size exceeds the maximum allowed value of {limit} bytes; "
        "use --http-max-input-size to increase the limit"
    )


async def read_body(
    receive: Callable[[], Awaitable[dict[str, Any]]], content_length: int | None, limit: int
) -> bytes:
    if content_length is not None and content_length > limit:
        raise _too_large(limit)
    msg = await receive()
    body = msg.get("body", b"")
    if not msg.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise TritonError.invalid_arg("client disconnected before sending the whole body")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not msg.get("more_body", False):
            break
    return b"".join(parts)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise TritonError.unsupported(f"unsupported Content-Encoding '{encoding}'")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _too_large(limit)
        out += d.flush()
    except zlib.error as e:
        raise TritonError.invalid_arg(f"failed to decompress the request body ({enc}): {e}") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out


def pick_encoding(accept: str) -> str:
    """gzip or deflate when the client accepts it (Triton's order), else identity."""
    acc = [a.split(";")[0].strip().lower() for a in accept.split(",")] if accept else []
    if "gzip" in acc:
        return "gzip"
    if "deflate" in acc:
        return "deflate"
    return ""


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=6)
    if encoding == "deflate":
        return zlib.compress(body)
    return body
