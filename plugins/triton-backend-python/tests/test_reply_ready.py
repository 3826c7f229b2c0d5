"""PendingExecute.wait(0) True means the whole reply is there: result() then never blocks
(the event loop calls it). A reply arriving in pieces is not ready until its last byte."""

from __future__ import annotations

import socket

from triton_backend_python.exec_channel import ExecChannel
from triton_python_backend_utils import _wire


def _worker_reading(sock: socket.socket) -> ExecChannel:
    w = ExecChannel(sock, spin_s=0.0, worker=None)  # only the exec channel's reading side
    w._spin_pays = False
    return w


def test_a_partial_reply_is_not_ready_and_a_whole_one_is():
    server_end, worker_end = socket.socketpair()
    with server_end, worker_end:
        w = _worker_reading(server_end)
        frame = _wire.encode(("OK", b"x" * 10_000))
        assert not w.reply_ready(0)  # nothing yet
        worker_end.sendall(frame[:3])  # not even the length
        assert not w.reply_ready(0)
        worker_end.sendall(frame[3:5000])
        assert not w.reply_ready(0)  # some bytes are not a reply
        worker_end.sendall(frame[5000:])
        assert w.reply_ready(0)
        assert w.reader.read() == ("OK", b"x" * 10_000)


def test_a_closed_channel_is_not_ready():
    server_end, worker_end = socket.socketpair()
    with server_end:
        w = _worker_reading(server_end)
        worker_end.sendall(_wire.encode(("OK",))[:2])
        worker_end.close()
        assert not w.reply_ready(0)
