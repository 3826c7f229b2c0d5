"""gRPC over HTTP/2, the parts above HTTP/2 itself: message framing, compression,
grpc-timeout and the status trailers (grpc/doc/PROTOCOL-HTTP2.md)."""

from __future__ import annotations

import binascii
import zlib

from .status import StatusCode

_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}

# gzip maps --grpc-infer-response-compression-level onto zlib's levels
ZLIB_LEVELS = {"low": 1, "medium": 6, "high": 9}

SUPPORTED_ENCODINGS = (b"identity", b"gzip", b"deflate")
ACCEPT_ENCODING = b"identity,deflate,gzip"


class WireError(Exception):
    """A call that cannot be read: ends the call with ``code`` and ``details``."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def parse_timeout(value: bytes) -> float | None:
    """grpc-timeout ("100m", "5S", ...) in seconds; None when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * unit


def decode_binary(value: bytes) -> bytes | None:
    """A -bin metadata value: base64 (the standard alphabet), padded or not; None when
    malformed. As grpc C-core reads it: any trailing '=' ignored, the unused bits zero."""
    data = value.rstrip(b"=")
    try:
        out = binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=True)
    except binascii.Error:
        return None
    # a2b_base64 ignores the unused bits of the last character: C-core refuses them set
    return out if binascii.b2a_base64(out, newline=False).rstrip(b"=") == data else None


def binary_error(key: bytes) -> WireError:
    # grpc C-core's words (an HPACK stream error)
    return WireError(StatusCode.INTERNAL,
                     f"Error parsing '{key.decode('latin-1')}' metadata: illegal base64 encoding")


def frame(payload: bytes, compressed: bool = False) -> bytes:
    """One length-prefixed message."""
    return (b"\x01" if compressed else b"\x00") + len(payload).to_bytes(4, "big") + payload


def compress(payload: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
    return c.compress(payload) + c.flush()


def decompress(payload: bytes, encoding: bytes, limit: int) -> bytes:
    """A compressed message's bytes (``encoding`` from grpc-encoding), at most ``limit``."""
    if encoding == b"gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        d = zlib.decompressobj()
    elif encoding in (b"", b"identity"):
        raise WireError(StatusCode.INTERNAL,
                        "a message is marked compressed but the call has no grpc-encoding")
    else:
        raise WireError(StatusCode.UNIMPLEMENTED,
                        f"Compression algorithm '{encoding.decode('latin-1')}' is not supported")
    try:
        out = d.decompress(payload, limit + 1)
    except zlib.error as e:
        raise WireError(StatusCode.INTERNAL, f"cannot decompress the message: {e}") from None
    if len(out) > limit:
        raise too_large(len(out), limit)
    return out


def too_large(size: int, limit: int) -> WireError:
    # grpc C-core's words
    return WireError(StatusCode.RESOURCE_EXHAUSTED,
                     f"Received message larger than max ({size} vs. {limit})")


class MessageReader:
    """Splits a call's request body into messages as its DATA frames arrive.

    A message that spans frames is held as its pieces and joined once, when its last byte
    has come: joining on every frame copied the held part again each time (quadratic: a
    512 MB message in 16 KiB frames held the event loop for minutes)."""

    __slots__ = ("chunks", "held", "need", "encoding", "limit")

    def __init__(self, encoding: bytes, limit: int) -> None:
        self.chunks: list[bytes] = []  # the held start of the next message
        self.held = 0  # their bytes
        self.need = 0  # the held message's bytes in all (5 while its prefix is incomplete)
        self.encoding = encoding
        self.limit = limit

    def feed(self, data: bytes, ends: list[int] | None = None) -> list[bytes]:
        """The messages completed by ``data``. With ``ends``, each message's end is appended
        too: its offset in the held partial message + ``data`` (the bytes on the wire, which
        flow control counts, differ from a compressed message's length)."""
        if self.held:
            n = self.held + len(data)
            self.chunks.append(data)
            if n < self.need:  # the held message is still incomplete: nothing to copy yet
                self.held = n
                return []
            buf = b"".join(self.chunks)
            self.chunks = []
            self.held = 0
        else:
            buf = data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        need = 5
        while n - pos >= 5:
            size = int.from_bytes(buf[pos + 1:pos + 5], "big")
            if size > self.limit:
                raise too_large(size, self.limit)
            end = pos + 5 + size
            if end > n:
                need = 5 + size
                break
            flag = buf[pos]
            payload = buf[pos + 5:end] if (pos or end != n) else buf[5:]
            if flag == 1:
                payload = decompress(payload, self.encoding, self.limit)
            elif flag != 0:
                raise WireError(StatusCode.INTERNAL, f"invalid message flag {flag}")
            out.append(payload)
            if ends is not None:
                ends.append(end)
            pos = end
        if pos < n:
            self.chunks = [buf[pos:] if pos else buf]
            self.held = n - pos
            self.need = need
        return out

    @property
    def partial(self) -> bool:
        return self.held > 0


def _printable(details: str) -> bool:
    return details.isascii() and details.isprintable() and "%" not in details


# The longest grpc-message sent. Details may quote the client's input (a model name of 1 MB):
# whole, the trailers outgrew what libnghttp2 sends and what clients take (grpc C-core refuses
# metadata over 8 KiB at random, over 16 KiB always), and the call ended in a bare reset.
MAX_MESSAGE = 4096
_KEEP_END = 256  # of a cut message, its end is kept too: it often says what was wrong
_CUT = "..."


def encode_message(details: str) -> bytes:
    """grpc-message: percent-encoded UTF-8 outside printable ASCII, at most MAX_MESSAGE bytes
    (a longer one keeps its start and end)."""
    out = _encode_message(details)
    if len(out) <= MAX_MESSAGE:
        return out
    head = MAX_MESSAGE - _KEEP_END - len(_CUT)
    cut = _encode_message(details[:head] + _CUT + details[-_KEEP_END:])
    if len(cut) > MAX_MESSAGE:  # not ASCII: a character takes up to 9 bytes (%XX x 3)
        cut = _encode_message(details[:head // 9] + _CUT + details[-_KEEP_END // 9:])
    return cut


def _encode_message(details: str) -> bytes:
    if _printable(details):
        return details.encode("ascii")
    out = bytearray()
    for b in details.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def status_headers(code: StatusCode, details: str) -> list[tuple[bytes, bytes]]:
    out = [(b"grpc-status", str(code.number).encode())]
    if details:
        out.append((b"grpc-message", encode_message(details)))
    return out
