"""One worker: its process and what it shares with the server, composed.

- ``process``: the OS process (WorkerProcess);
- ``exec_channel``: EXEC frames and their replies, the hot path (ExecChannel);
- ``control_channel``: the async channel and its reader thread (ControlChannel);
- ``arenas``: the two shared-memory arenas and the tensors in them (ArenaPair);
- ``bls``: the BLS requests and control operations the model sends (BlsServer).

``dead`` is set by whoever first sees the worker gone (a channel closing); the
diagnosis (wait_exit_reason) only reads.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from typing import TYPE_CHECKING

from triton_core.errors import TritonError
from triton_python_backend_utils import _wire

from . import prestart
from .arenas import ArenaPair
from .bls import BlsServer
from .control_channel import ControlChannel
from .exec_channel import ExecChannel
from .metrics import STORE
from .process import WorkerProcess

if TYPE_CHECKING:
    from .backend import PythonInstance, PythonModel

log = logging.getLogger("triton_core.python")


class Worker:
    """One worker process and everything it shares with the server."""

    def __init__(self, model: PythonModel, instance_name: str, decoupled: bool,
                 instance: PythonInstance | None = None) -> None:
        self.model = model
        self.instance = instance
        self.instance_name = instance_name
        self.decoupled = decoupled
        self.settings = st = model.backend.settings
        self.process = WorkerProcess(model.python)
        self.arenas = ArenaPair(st.shm_default, st.shm_growth, self.describe)
        self.bls = BlsServer(self)
        self.exec_channel: ExecChannel = None  # type: ignore[assignment]  # start()'s
        self.control_channel: ControlChannel = None  # type: ignore[assignment]  # start()'s
        self.has_autocomplete: bool | None = None
        self.has_is_ready = False
        self.dead = False
        self.stopping = False
        self.python_version = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc

    @property
    def prefix(self) -> str:
        return self.arenas.prefix

    def describe(self) -> str:
        return f"model '{self.model.name}' (instance '{self.instance_name}', pid {self.pid})"

    # start-up -----------------------------------------------------------------
    def start(self) -> None:
        st = self.settings
        m = self.model
        arenas = self.arenas
        arenas.create_first()
        cwd = str(m.model_file.parent)
        spare = prestart.take(m.python, m.env)
        if spare is not None:
            self.process = spare.process
            self.exec_channel = ExecChannel(spare.exec_sock, st.spin_s, self)
            self.control_channel = ControlChannel(spare.async_sock, self)
            log.debug("python backend: %s adopts the worker started before the server's "
                      "imports", self.describe())
        else:
            self._spawn(cwd)
        m.backend.workers.add(self)
        settings = {"prefix": arenas.prefix, "model_name": m.name, "decoupled": self.decoupled,
                    "model_file": str(m.model_file), "w_size": len(arenas.w_segs[0]),
                    "growth": st.shm_growth, "spin_us": st.spin_s * 1e6, "cwd": cwd}
        try:
            reply = self.call((_wire.INIT, settings), st.stub_timeout, what="start-up")
        except BaseException:
            self.stop()
            raise
        self.has_autocomplete = None
        self.has_is_ready = bool(reply[1])
        self.python_version = reply[2]
        arenas.unlink_all()  # both processes mapped segment 0 of each arena
        self.control_channel.start_reader(self.pid)

    def _spawn(self, cwd: str) -> None:
        m = self.model
        ea, eb = socket.socketpair()
        aa, ab = socket.socketpair()
        self.exec_channel = ExecChannel(ea, self.settings.spin_s, self)
        self.control_channel = ControlChannel(aa, self)
        try:
            self.process.spawn(eb.fileno(), ab.fileno(), m.env, cwd)
        except OSError as e:
            self.stop()
            raise TritonError.invalid_arg(
                f"model '{m.name}': cannot start the python interpreter '{m.python}': {e}") from None
        finally:
            eb.close()
            ab.close()

    def call(self, msg: tuple, timeout: float | None, what: str) -> tuple:
        """One request / reply on the execute channel (start-up, auto-complete, initialize)."""
        ch = self.exec_channel
        try:
            reply = ch.call(msg, timeout)
        except TimeoutError:
            self.kill()
            raise TritonError.unavailable(
                f"python backend: {what} of {self.describe()} did not finish within {timeout:g} s "
                "(backend config stub-timeout-seconds); the worker was killed") from None
        except (_wire.ChannelClosed, OSError):
            self.dead = True
            raise TritonError.internal(
                f"python backend: the worker of {self.describe()} exited during {what}: "
                f"{self.wait_exit_reason()}") from None
        finally:
            if not self.dead:
                ch.set_execute_timeout(self.model.execute_timeout)
        if reply[0] == _wire.ERR:
            raise TritonError.internal(
                f"python backend: {what} of model '{self.model.name}' failed: {reply[2]}")
        return reply

    def wait_exit_reason(self) -> str:
        """Why the worker is gone, for a message: may wait up to 2.5 s (for the bootstrap's
        FATAL message, then for the exit status). Changes nothing but what it learns."""
        p, ch = self.process, self.control_channel
        if not p.fatal and ch is not None and not ch.running:
            # the bootstrap reports why it could not start on the async channel
            p.fatal = ch.read_fatal()
        return p.wait_exit_reason()

    # shutdown ---------------------------------------------------------------------
    def kill(self) -> None:
        self.process.kill()

    def stop(self, finalize_timeout: float = 30.0) -> None:
        """finalize() in the worker, then reap it and free its shared memory."""
        self.stopping = True
        ch = self.exec_channel
        if self.process.running() and not self.dead and ch is not None:
            try:
                reply = ch.call((_wire.FINALIZE,), finalize_timeout)
                if reply[0] == _wire.ERR:
                    log.error("python backend: finalize of %s failed: %s", self.describe(), reply[2])
            except (OSError, _wire.ChannelClosed):
                pass
        self.process.reap()
        for c in (ch, self.control_channel):
            if c is not None:
                c.close()
        self.arenas.unlink_all()
        STORE.drop_owner(self)
        self.process.join(timeout=2)
        if self.control_channel is not None:
            self.control_channel.join(timeout=2)
