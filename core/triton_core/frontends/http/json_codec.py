"""Request and response JSON: msgspec for the common case, the standard library for the rest.

msgspec reads and writes JSON in C (a request of two 16-float inputs: 1.3 us to decode
instead of 8.4, its response 1.3 us to encode instead of 17; bench/json/codec_bench.py).
It is exact where orjson is not: integers past 64 bits stay integers. What it refuses but
Python's json reads (Triton's NaN and Infinity literals, lone surrogates, byte order marks,
UTF-16 bodies, nesting past its depth limit) is read by the standard path, so every body
means what it meant before and malformed ones keep their error words.

msgspec writes a non-finite float as null; Triton writes NaN, Infinity and -Infinity. A
body whose encoding holds "null" is written again by json.dumps (a None writes null there
too, so only the spelling of NaN and Infinity changes by it). Both write text as UTF-8,
as Triton does.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ...errors import TritonError
from .deep_json import parse_deep_json

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def decode_json(body: bytes | memoryview) -> Any:
    """A request's JSON; malformed JSON is the client's error (400).

    JSON nested deeper than Python's parser goes (its recursion guard, about a thousand
    levels) is read by deep_json, as Triton reads any depth, and its deep parts are then
    refused by the handlers as values of the wrong kind.
    """
    try:
        return _decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TritonError.invalid_arg(f"failed to parse the request JSON buffer: {e}") from None
    except RecursionError:
        return parse_deep_json(body)


def encode_json(obj: Any) -> bytes:
    """``obj`` as compact JSON; non-finite floats as NaN, Infinity, -Infinity (Triton's)."""
    try:
        out = _encode(obj)
    except (TypeError, ValueError, msgspec.EncodeError):
        # a type msgspec does not write, or a lone surrogate: the standard library's text
        return json.dumps(obj, separators=(",", ":")).encode()
    if b"null" in out:  # perhaps a NaN or an infinity, which msgspec writes as null
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return out
