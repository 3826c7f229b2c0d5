"""The worker <-> server channel: length-prefixed frames of compact marshal data.

Only the standard library: this module runs inside worker processes, possibly
under another Python installation (EXECUTION_ENV_PATH). Frames carry small
control tuples (never tensor data: tensors lie in the shared-memory arena and
frames name them by (segment, offset, size)). marshal format 4 reads the same
on every Python 3 in use, and handles only plain data (no code execution).
"""

from __future__ import annotations

import marshal
import socket
import struct

_HDR = struct.Struct("<I")
MAX_FRAME = 1 << 30
MARSHAL_VERSION = 4

# server -> worker, on the execute channel (each answered by one OK / ERR frame)
INIT = 1          # (INIT, settings dict)
AUTOCOMPLETE = 2  # (AUTOCOMPLETE, config dict) -> (OK, config dict)
INITIALIZE = 3    # (INITIALIZE, args dict)
EXEC = 4          # (EXEC, requests) -> (OK, responses | None)
FINALIZE = 5      # (FINALIZE,) -> (OK,), then the worker exits
OK = 10
ERR = 11          # (ERR, code, message)

# worker -> server, on the async channel
SEND = 20      # (SEND, token, flags, response | None): a decoupled response
BLS = 21       # (BLS, call_id, request, decoupled)
CTRL = 22      # (CTRL, call_id, op, args): load / unload / ready / cancelled / metric_value / is_ready
LOG = 23       # (LOG, level, message)
METRIC = 24    # (METRIC, op, args): family / metric / update / drop (fire and forget)
GROW = 25      # (GROW, call_id, min_size): a new worker-arena segment, please
MAPPED = 26    # (MAPPED, arena, seg_id): the worker mapped a segment; the server may unlink it
FATAL = 27     # (FATAL, message): the worker cannot start (sent before it exits)

# server -> worker, on the async channel
BLS_RESP = 40  # (BLS_RESP, call_id, final, response | None)
CTRL_RESP = 41  # (CTRL_RESP, call_id, ok, value | (code, message))
IS_READY_Q = 42  # (IS_READY_Q, call_id): ask the model's is_ready()

# Triton error codes (TRITONSERVER_Error_Code order), as pb_utils.TritonError numbers them.
CODES = ("UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
         "ALREADY_EXISTS", "CANCELLED")


class ChannelClosed(ConnectionError):
    """The peer went away (EOF or reset)."""


def encode(obj: object) -> bytes:
    data = marshal.dumps(obj, MARSHAL_VERSION)
    return _HDR.pack(len(data)) + data


def send(sock: socket.socket, obj: object) -> None:
    try:
        sock.sendall(encode(obj))
    except OSError as e:
        raise ChannelClosed(str(e)) from None


class Reader:
    """Reads whole frames from a stream socket (buffered: one recv often holds several)."""

    __slots__ = ("sock", "buf", "pos")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def _fill(self, need: int) -> None:
        have = len(self.buf) - self.pos
        chunks = [self.buf[self.pos:]] if have else []
        while have < need:
            try:
                data = self.sock.recv(max(65536, need - have))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ChannelClosed(str(e)) from None
            if not data:
                raise ChannelClosed("the peer closed the channel")
            chunks.append(data)
            have += len(data)
        self.buf = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        self.pos = 0

    def feed(self, data: bytes) -> None:
        """Bytes the caller received itself, read before the socket's."""
        if self.pos < len(self.buf):
            self.buf = self.buf[self.pos:] + data
        else:
            self.buf = data
        self.pos = 0

    def has_frame(self) -> bool:
        """Whether a whole frame is buffered (read() then needs no recv)."""
        have = len(self.buf) - self.pos
        return have >= 4 and have >= 4 + _HDR.unpack_from(self.buf, self.pos)[0]

    def read(self) -> object:
        if len(self.buf) - self.pos < 4:
            self._fill(4)
        (n,) = _HDR.unpack_from(self.buf, self.pos)
        if n > MAX_FRAME:
            raise ChannelClosed(f"frame of {n} bytes exceeds the limit of {MAX_FRAME}")
        if len(self.buf) - self.pos < 4 + n:
            self._fill(4 + n)
        start = self.pos + 4
        self.pos = start + n
        if self.pos == len(self.buf):
            data = self.buf[start:] if start else self.buf
            self.buf = b""
            self.pos = 0
            return marshal.loads(data)
        return marshal.loads(self.buf[start:self.pos])
