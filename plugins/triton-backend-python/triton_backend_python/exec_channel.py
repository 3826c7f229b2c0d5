"""The execute channel: one socketpair per worker carrying EXEC frames and their replies.

This is the python backend's hot path: the core's event loop (or the instance thread)
sends one EXEC frame per batch and reads the reply itself, with no thread hand-off.
With spin-microseconds (default 0) both sides poll a while before sleeping in the
kernel: a process wake-up costs ~30 us on small VMs, but the poll takes a core the
server may need. The server side spins for a reply only on an instance thread, and
only while replies keep coming within that window.

The same channel carries the start-up, auto-complete, initialize and finalize calls
(call()), always before or after any EXEC frame.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from triton_python_backend_utils import _wire

if TYPE_CHECKING:
    from .worker import Worker

NO_TIMEOUT = 365 * 86400.0  # "no execute timeout", as a socket timeout


class WorkerDied(Exception):
    pass


class WorkerTimedOut(Exception):
    """execute ran past EXECUTE_TIMEOUT_SECONDS; the worker has been killed."""


class ExecChannel:
    """The server's end of the execute channel, with its spin policy."""

    __slots__ = ("sock", "reader", "spin_s", "worker", "outstanding", "_poll", "_spin_pays",
                 "_sent_at")

    def __init__(self, sock: socket.socket, spin_s: float, worker: Worker | None) -> None:
        self.sock = sock
        self.reader = _wire.Reader(sock)
        self.spin_s = spin_s
        self.worker = worker  # for diagnosing its death (never on the hot path)
        self.outstanding = 0  # EXEC frames sent whose reply is not read yet
        self._poll: Any = None  # select.poll on sock, made on first use
        self._spin_pays = True  # the last reply came within spin-microseconds
        self._sent_at = 0.0

    # start-up, initialize, finalize ---------------------------------------------
    def call(self, msg: tuple, timeout: float | None) -> tuple:
        """One request / reply outside execute (raises TimeoutError, ChannelClosed, OSError)."""
        sock = self.sock
        sock.settimeout(timeout)
        sock.sendall(_wire.encode(msg))
        return self.reader.read()

    def set_execute_timeout(self, timeout: float | None) -> None:
        try:
            # Never None: an event loop watching the socket (the core's loop
            # driver) leaves it O_NONBLOCK, which only a timeout copes with.
            self.sock.settimeout(timeout or NO_TIMEOUT)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # execute (hot path) -------------------------------------------------------------
    def send_exec(self, msg: tuple) -> OSError | None:
        """Send an EXEC frame; a failure is returned for receive() to report."""
        # lone: tells the worker whether spinning for the next request pays (not while
        # another request is already queued behind this one)
        data = _wire.encode((*msg, self.outstanding == 0))
        self.outstanding += 1  # receive() takes it back, whatever the send did
        try:
            self.sock.sendall(data)
        except OSError as e:
            return e
        self._sent_at = time.perf_counter()
        return None

    def reply_ready(self, timeout: float) -> bool:
        """Whether the whole reply to the last EXEC frame is buffered, waiting up to
        ``timeout`` for it (PendingExecute.wait: True means result() will not block). False
        at EOF: receive() reports the death."""
        reader = self.reader
        if reader.has_frame():
            return True
        while self._pull():  # the event loop's case: readable, the socket non-blocking
            if reader.has_frame():
                return True
        try:
            if self._poll is None:  # poll, not select: fds past FD_SETSIZE are fine
                # Inside the try: the worker may have been stopped and the socket
                # closed already (fileno -1: ValueError).
                p = select.poll()
                p.register(self.sock, select.POLLIN)
                self._poll = p
            poll, clock = self._poll.poll, time.perf_counter
            end = clock() + timeout
            spin = min(self.spin_s, timeout)
            if spin and self._spin_pays:
                spin_end = clock() + spin
                while clock() < spin_end:
                    if poll(0):
                        if not self._pull(True):
                            return False
                        if reader.has_frame():
                            return True
            while True:  # polls at least once (wait(0) asks "is it there now?")
                left = max(0.0, end - clock())
                if not poll(left * 1000.0) or not self._pull(True):
                    return False
                if reader.has_frame():
                    return True
                if clock() >= end:
                    return False
        except (OSError, ValueError):
            return False  # closed: receive() reports it

    def _pull(self, polled: bool = False) -> bool:
        """Reads what the worker wrote so far into the reader, without blocking (``polled``:
        poll() said readable). False at EOF (the caller must not count on a reply without
        blocking: receive() reports it) and when nothing is there."""
        sock = self.sock
        try:
            if sock.gettimeout() is None:  # blocking descriptor
                if not polled:
                    return False  # the caller polls first
                data = sock.recv(65536)
            else:
                # A socket with a timeout waits in recv() even with MSG_DONTWAIT; its descriptor
                # is non-blocking, so os.read answers at once.
                data = os.read(sock.fileno(), 65536)
        except OSError:  # BlockingIOError included: nothing yet
            return False
        if not data:
            return False
        self.reader.feed(data)
        return True

    def receive(self, send_error: OSError | None) -> tuple:
        """The reply to the EXEC frame send_exec sent (raises WorkerDied / WorkerTimedOut)."""
        self.outstanding -= 1
        try:
            if send_error is not None:
                raise send_error
            spin = self.spin_s
            if spin:
                self.reply_ready(spin)
                reply = self.reader.read()
                # spin for the next reply only if this one came within the window
                self._spin_pays = time.perf_counter() - self._sent_at <= spin
                return reply
            return self.reader.read()
        except TimeoutError:
            w = self.worker
            assert w is not None
            w.kill()
            raise WorkerTimedOut(
                f"model '{w.model.name}': execute did not finish within "
                f"{w.model.execute_timeout:g} s (EXECUTE_TIMEOUT_SECONDS); its worker was "
                "killed and is restarting") from None
        except (_wire.ChannelClosed, OSError):
            w = self.worker
            assert w is not None
            w.dead = True
            raise WorkerDied(
                f"the python backend worker of {w.describe()} exited unexpectedly "
                f"({w.wait_exit_reason()}); it is being restarted") from None
