"""An instance's Core ML model in a worker process (model parameter ``worker_process: true``).

coremltools' bridge holds the GIL for a whole prediction, and Core ML is known to abort
the process on some malformed models. In a worker process a prediction holds only the
worker's GIL, and an abort fails the requests of that call with UNAVAILABLE and a new
worker is started for the next one, while the server serves on. The price: a process per
instance and a copy of every input and output through a pipe (pickle).

Protocol (multiprocessing Connection, spawn start): the worker sends ("ready", None) or
("error", message) after loading; then answers each ("predict", payload, states) with
("ok", result) or ("error", message); ("stop",) ends it.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

from triton_core.errors import TritonError

log = logging.getLogger("triton_backend_coreml")

Loader = Callable[..., Any]
"""A picklable (module-level) function returning an object with predict() / make_state()."""

START_TIMEOUT_S = 600.0  # loading a large model onto the Neural Engine takes its time
STOP_TIMEOUT_S = 5.0


def _serve(conn, loader: Loader, args: tuple) -> None:  # runs in the worker
    from .predict import run_call

    try:
        mlmodel = loader(*args)
    except Exception as e:  # noqa: BLE001 - the parent reports it as a load failure
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "stop":
            return
        _, payload, states = msg
        try:
            conn.send(("ok", run_call(mlmodel, payload, states)))
        except Exception as e:  # noqa: BLE001 - one failed call, the worker lives on
            conn.send(("error", f"{type(e).__name__}: {e}"))


class PredictWorker:
    """One worker process; ``predict`` is called from one thread at a time (the instance's)."""

    def __init__(self, what: str, loader: Loader, args: tuple) -> None:
        self.what = what  # "model 'm', instance 'm_0'" for messages
        self.loader = loader
        self.args = args
        self.proc: Any = None
        self.conn: Any = None
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the server has threads
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.loader, self.args), daemon=True,
                           name=f"coreml-worker {self.what}")
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            proc.kill()
            raise TritonError.unavailable(f"{self.what}: the Core ML worker did not start within "
                                          f"{START_TIMEOUT_S:.0f} s")
        try:
            kind, detail = parent.recv()
        except EOFError:
            proc.join(STOP_TIMEOUT_S)
            raise TritonError.unavailable(f"{self.what}: the Core ML worker exited while loading the "
                                          f"model ({_exit_reason(proc.exitcode)})") from None
        if kind != "ready":
            proc.join(STOP_TIMEOUT_S)
            raise TritonError.invalid_arg(f"{self.what}: Core ML cannot load the model: {detail}")
        self.proc, self.conn = proc, parent

    def predict(self, payload: Any, states: Any) -> Any:
        with self._lock:
            if self.proc is None or not self.proc.is_alive():
                self.start()
            try:
                self.conn.send(("predict", payload, states))
                kind, result = self.conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self.proc.join(STOP_TIMEOUT_S)
                reason = _exit_reason(self.proc.exitcode)
                log.error("%s: the Core ML worker died (%s); starting another", self.what, reason)
                self.proc = None
                raise TritonError.unavailable(
                    f"{self.what}: the Core ML worker died during the prediction ({reason}); a new "
                    "worker serves the next request") from None
        if kind == "error":
            raise TritonError.internal(f"Core ML failed to run {self.what}: {result}")
        return result

    def close(self) -> None:
        with self._lock:
            proc, conn, self.proc = self.proc, self.conn, None
        if proc is None:
            return
        try:
            conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        proc.join(STOP_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(STOP_TIMEOUT_S)
        conn.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
