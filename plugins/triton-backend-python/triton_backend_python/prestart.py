"""A worker started before the server has imported itself (triton-core's prestart).

A worker's start (a new interpreter importing numpy: about 0.1 s) otherwise follows the
server's own imports (about 0.3 s) before the first python model is ready. When the
repository holds a python model that runs on the server's interpreter, the prestart
entry point spawns one worker at once; the first model load on that interpreter and
environment adopts it (worker.Worker.start) and tells it its model folder. One no
model adopted (its model failed before its worker started, or the environment changed)
is stopped when the server has started (plugin.triton_server_started), or after
SPARE_TTL_S where the start never ends.

Standard library only: this runs before the server imports anything else.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .process import WorkerProcess

log = logging.getLogger("triton_core.python")

SPARE_TTL_S = 120.0
# where triton_python_backend_utils lies (its package imports numpy: not imported here)
_UTILS_PARENT = str(Path(__file__).resolve().parent.parent)
_PYTHON_BACKEND = re.compile(rb'backend\s*:\s*"python"')


@dataclass
class Spare:
    process: WorkerProcess
    exec_sock: socket.socket
    async_sock: socket.socket
    env: dict[str, str]
    inherited: tuple  # the process state a fresh worker would inherit (_inherited())
    timer: threading.Timer
    owner: int  # the pid that spawned it: a forked child never adopts its parent's spare


_lock = threading.Lock()
_spare: Spare | None = None


def default_env() -> dict[str, str]:
    """A worker's environment on the server's own interpreter."""
    env = dict(os.environ)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _UTILS_PARENT + (os.pathsep + pp if pp else "")
    return env


def _inherited() -> tuple:
    """Process state a worker inherits at its start besides its environment and that
    the server changes as it starts (the open-file limit, for --allow-client-shm): an
    adopted spare must have started with the same."""
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return ()


def runs_on_the_server_interpreter(model_dir: str) -> bool:
    """Whether the folder holds a python model without an EXECUTION_ENV_PATH: its
    config.pbtxt names the python backend, or it has none and a version has a model.py."""
    try:
        with open(os.path.join(model_dir, "config.pbtxt"), "rb") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        try:
            versions = [v for v in os.listdir(model_dir) if v.isdigit()]
        except OSError:
            return False
        return any(os.path.isfile(os.path.join(model_dir, v, "model.py")) for v in versions)
    except OSError:
        return False
    return bool(_PYTHON_BACKEND.search(text)) and b"EXECUTION_ENV_PATH" not in text


def prestart(plan: Any) -> None:
    """The ``triton_core.prestart`` entry point (triton_core.prestart.PrestartPlan)."""
    global _spare
    # Relative PYTHONPATH entries resolve against the folder a worker starts in (its
    # model's; "/" for the spare): leave such servers the usual start.
    if any(p and not os.path.isabs(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        return
    if not any(runs_on_the_server_interpreter(d) for d in plan.model_dirs()):
        return
    discard()  # one spare at most
    env = default_env()
    ea, eb = socket.socketpair()
    aa, ab = socket.socketpair()
    process = WorkerProcess(sys.executable)
    try:
        # "/" until adopted: the worker changes to its model's folder then
        process.spawn(eb.fileno(), ab.fileno(), env, os.path.abspath(os.sep))
    except OSError:
        for s in (ea, aa):
            s.close()
        raise
    finally:
        eb.close()
        ab.close()
    timer = threading.Timer(SPARE_TTL_S, discard)
    timer.daemon = True
    with _lock:
        _spare = Spare(process, ea, aa, env, _inherited(), timer, os.getpid())
    timer.start()


def take(python: str, env: dict[str, str]) -> Spare | None:
    """The spare worker for a model on this interpreter and environment, if one waits."""
    global _spare
    with _lock:
        spare = _spare
        if spare is None or python != spare.process.python or spare.owner != os.getpid():
            return None
        _spare = None
    spare.timer.cancel()
    if env != spare.env or _inherited() != spare.inherited or not spare.process.running():
        # the server's environment or limits changed since, or the spare died: start afresh
        _close(spare)
        return None
    return spare


def discard() -> None:
    """Kills a spare no model adopted."""
    global _spare
    with _lock:
        spare = _spare
        if spare is None or spare.owner != os.getpid():
            return
        _spare = None
    if spare is not None:
        spare.timer.cancel()
        log.info("python backend: no model adopted the worker started before the server's "
                 "imports (pid %d); stopped", spare.process.pid)
        _close(spare)


def _close(spare: Spare) -> None:
    # killed, not told: it holds nothing, and it reads its channel only once its own
    # imports are done (a load or the server's start would wait for them)
    spare.process.kill()
    for s in (spare.exec_sock, spare.async_sock):
        s.close()
    spare.process.reap(timeout=5.0)
    spare.process.join(timeout=2.0)
