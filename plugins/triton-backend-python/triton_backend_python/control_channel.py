"""The async channel: everything the worker says outside an execute reply.

One reader thread per worker takes the worker's messages (decoupled responses, BLS
calls, model control, logs, metrics, arena growth) and hands each to the handler its
_wire kind names. Handlers run on that thread, so they must not wait long: BLS calls
and model loads go to the backend's thread pool. The server posts its own messages
(questions, BLS responses) under a lock, from any thread.

It also keeps the model's readiness answer: probes run on the event loop and never
wait for the worker (ready_now).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from triton_core.errors import TritonError
from triton_python_backend_utils import _wire

from .codes import to_wire
from .metrics import STORE

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("triton_core.python")

_LOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: 5}

# A model's is_ready() that has not answered for this long reads as not ready.
READY_TIMEOUT_S = 5.0


class _ReadyAnswer:
    """Where a background is_ready() answer goes (the reader thread calls put)."""

    __slots__ = ("channel",)

    def __init__(self, channel: ControlChannel) -> None:
        self.channel = channel

    def put(self, reply: tuple) -> None:
        ok, value = reply
        ch = self.channel
        ch._ready_answer = bool(ok and value)  # noqa: SLF001 - the channel's own cache
        ch._ready_asked_at = 0.0


class ControlChannel:
    """The server's end of a worker's async channel."""

    def __init__(self, sock: socket.socket, worker: Worker) -> None:
        self.sock = sock
        self.worker = worker
        self.lock = threading.Lock()
        self.running = False  # the reader thread owns sock's reading side
        self.calls: dict[int, Any] = {}  # question id -> where its CTRL_RESP goes (.put)
        self._ids = iter(range(1, 1 << 62))
        self._thread: threading.Thread | None = None
        self._ready_answer = True  # the model's last is_ready() answer (ready_now)
        self._ready_asked_at = 0.0  # when the question now out was asked (0: none)

    def post(self, msg: tuple) -> None:
        data = _wire.encode(msg)
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the reader notices the death

    def read_fatal(self, timeout: float = 0.5) -> str:
        """The bootstrap's FATAL message, when the worker could not start ("" if none came
        within ``timeout``). Only before the reader thread runs: it owns the socket after."""
        assert not self.running
        try:
            self.sock.settimeout(timeout)
            msg = _wire.Reader(self.sock).read()
            if msg[0] == _wire.FATAL:
                return msg[1]
        except (OSError, _wire.ChannelClosed, ValueError, EOFError, TypeError):
            pass
        return ""

    def start_reader(self, pid: int) -> None:
        t = threading.Thread(target=self._loop, name=f"pb-async-{pid}", daemon=True)
        self.running = True
        t.start()
        self._thread = t

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def join(self, timeout: float) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=timeout)

    # readiness -------------------------------------------------------------------
    def ready_now(self) -> bool:
        """The model's last is_ready() answer, without waiting (readiness probes run on the
        event loop). Each call asks again in the background when no question is out, so the
        answer is at most one probe old; a question unanswered for READY_TIMEOUT_S reads
        as not ready."""
        sent = self._ready_asked_at
        if sent:
            return self._ready_answer and time.monotonic() - sent < READY_TIMEOUT_S
        self._ready_asked_at = time.monotonic()
        cid = next(self._ids)
        self.calls[cid] = _ReadyAnswer(self)
        self.post((_wire.IS_READY_Q, cid))
        return self._ready_answer

    # the reader thread -------------------------------------------------------------
    def _loop(self) -> None:
        w = self.worker
        reader = _wire.Reader(self.sock)
        handlers = _HANDLERS
        while True:
            try:
                msg = reader.read()
            except (_wire.ChannelClosed, OSError, ValueError):
                break
            handler = handlers.get(msg[0])
            if handler is None:
                continue  # a kind this server does not know: ignored
            try:
                handler(self, msg)
            except Exception:  # noqa: BLE001 - one bad message must not stop the channel
                log.exception("python backend: %s: handling a %s message failed",
                              w.describe(), msg[0])
        w.dead = True
        STORE.drop_owner(w)
        for call in list(self.calls.values()):
            call.put((False, (1, "worker exited")))
        if w.instance is not None:
            w.instance.on_death(w)

    def _on_send(self, msg: tuple) -> None:  # a decoupled response
        w = self.worker
        if w.instance is not None:
            w.instance.on_send(w, msg[1], msg[2], msg[3])

    def _on_log(self, msg: tuple) -> None:
        log.log(_LOG_LEVELS.get(msg[1], logging.INFO), "%s: %s", self.worker.model.name, msg[2])

    def _on_metric(self, msg: tuple) -> None:
        STORE.update(self.worker, msg[1], msg[2], msg[3])

    def _on_mapped(self, msg: tuple) -> None:
        self.worker.arenas.mapped(msg[1], msg[2])

    def _on_grow(self, msg: tuple) -> None:
        seg_id, min_size = msg[2]
        try:
            name = self.worker.arenas.grow_worker(seg_id, min_size)
        except TritonError as e:  # the worker's allocation fails with it
            self.post((_wire.CTRL_RESP, msg[1], False, to_wire(e)))
            return
        self.post((_wire.CTRL_RESP, msg[1], True, name))

    def _on_bls(self, msg: tuple) -> None:
        self.worker.bls.submit(msg[1], msg[2], msg[3])

    def _on_ctrl(self, msg: tuple) -> None:
        self.worker.bls.control(msg[1], msg[2], msg[3])

    def _on_ctrl_resp(self, msg: tuple) -> None:  # the answer to a question the server asked
        q = self.calls.pop(msg[1], None)
        if q is not None:
            q.put((msg[2], msg[3]))

    def _on_fatal(self, msg: tuple) -> None:
        self.worker.process.fatal = msg[1]


_HANDLERS: dict[int, Callable[[ControlChannel, tuple], None]] = {
    _wire.SEND: ControlChannel._on_send,
    _wire.LOG: ControlChannel._on_log,
    _wire.METRIC: ControlChannel._on_metric,
    _wire.MAPPED: ControlChannel._on_mapped,
    _wire.GROW: ControlChannel._on_grow,
    _wire.BLS: ControlChannel._on_bls,
    _wire.CTRL: ControlChannel._on_ctrl,
    _wire.CTRL_RESP: ControlChannel._on_ctrl_resp,
    _wire.FATAL: ControlChannel._on_fatal,
}
