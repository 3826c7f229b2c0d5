"""The python backend, server side: models, instances and their worker processes.

Each instance owns one worker process (triton_python_backend_utils._stub)
running the user's model.py; the server never imports user code. Per worker:

- the execute channel (a socketpair): the core's event loop (its loop driver)
  or the instance thread sends one EXEC frame per batch and reads the reply
  itself (no thread hand-off on the hot path);
- the async channel (a second socketpair): decoupled responses, BLS calls,
  model control, logs and metrics, read by one thread per worker; BLS and
  model loads run on the backend's thread pool;
- two shared-memory arenas (native layer regions): the server's, holding
  request inputs and BLS responses, and the worker's, holding response outputs
  and BLS inputs. Frames only name (segment, offset, size). Segments are
  unlinked as soon as both processes mapped them, so nothing is left behind.

A worker that dies fails what it had in flight, the instance reports not ready,
and a new worker is started (with back-off while it keeps failing).

A worker (worker.Worker) composes one object per concern: process.WorkerProcess,
exec_channel.ExecChannel, control_channel.ControlChannel, arenas.ArenaPair and
bls.BlsServer. This module holds the backend, its models and instances.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import triton_python_backend_utils as _pbu
from triton_core import abi
from triton_core.config import config_to_json_dict, parse_config_json
from triton_core.errors import TritonError
from triton_core.models.defaults import complete_config
from triton_core.request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse
from triton_python_backend_utils import _arena, _wire

from . import prestart
from .arenas import nbytes as _nbytes
from .codes import from_wire as _error
from .exec_channel import WorkerDied, WorkerTimedOut
from .worker import Worker

__all__ = ["PythonBackend", "PythonInstance", "PythonModel", "Settings", "Worker", "WorkerDied",
           "WorkerTimedOut"]

log = logging.getLogger("triton_core.python")

BACKEND_NAME = "python"
DEFAULT_MODEL_FILENAME = "model.py"
_PKG_DIR = Path(_pbu.__file__).resolve().parent  # triton_python_backend_utils/
_KIND_ARG = {"KIND_CPU": "CPU", "KIND_GPU": "GPU", "KIND_MODEL": "MODEL", "KIND_AUTO": "CPU"}


class _NotStarted(Exception):
    """The worker died before it read the EXEC frame: the batch never ran, retry it."""


# ------------------------------------------------------------------ settings

class Settings:
    def __init__(self, cfg: dict[str, str]) -> None:
        def num(key: str, default: float) -> float:
            try:
                return float(cfg.get(key, default))
            except ValueError:
                raise TritonError.invalid_arg(
                    f"backend config python,{key}={cfg[key]}: not a number") from None

        self.shm_default = int(num("shm-default-byte-size", 1 << 20))
        self.shm_growth = int(num("shm-growth-byte-size", 1 << 20))
        self.stub_timeout = num("stub-timeout-seconds", 30.0)
        self.bls_threads = int(num("bls-threads", 32))
        # Off by default, as Triton's stub: polling saves a process wake-up (~30 us) only
        # where a core is free for it; on 2 cores under load it cost a third of throughput.
        self.spin_s = max(0.0, num("spin-microseconds", 0)) / 1e6


# ------------------------------------------------------------------ backend

class PythonBackend(abi.Backend):
    def __init__(self, ctx: abi.BackendContext) -> None:
        self.settings = Settings(ctx.config)
        self.pool = ThreadPoolExecutor(self.settings.bls_threads, thread_name_prefix="pb-bls")
        self._envs: dict[str, Path] = {}
        self._env_lock = threading.Lock()
        self._shim: Path | None = None
        self.workers: weakref.WeakSet[Worker] = weakref.WeakSet()

    def load_model(self, ctx: abi.ModelContext) -> PythonModel:
        return PythonModel(self, ctx)

    def shim_dir(self) -> Path:
        """A folder holding only triton_python_backend_utils, for foreign interpreters."""
        with self._env_lock:
            if self._shim is None:
                d = Path(tempfile.mkdtemp(prefix="tritoncore-pb-"))
                (d / "triton_python_backend_utils").symlink_to(_PKG_DIR, target_is_directory=True)
                self._shim = d
            return self._shim

    def unpack_env(self, archive: Path) -> Path:
        import tarfile  # conda-pack archives only

        with self._env_lock:
            key = str(archive.resolve())
            if key not in self._envs:
                d = Path(tempfile.mkdtemp(prefix="tritoncore-pyenv-"))
                with tarfile.open(archive) as tf:
                    tf.extractall(d, filter="data")
                self._envs[key] = d
            return self._envs[key]

    def close(self) -> None:
        # Models are closed first; a worker still alive here outlived its unload
        # deadline (a hung execute or finalize): the server is exiting, kill it.
        for w in list(self.workers):
            w.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for d in [*self._envs.values(), *([self._shim] if self._shim else [])]:
            shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ model

class PythonModel(abi.Model):
    def __init__(self, backend: PythonBackend, ctx: abi.ModelContext) -> None:
        self.backend = backend
        self.ctx = ctx
        self.server = ctx.server
        cfg = ctx.config
        self.name = ctx.name
        self.model_file = (ctx.version_path / (cfg.default_model_filename or DEFAULT_MODEL_FILENAME)
                           ).absolute()
        if not self.model_file.is_file():
            raise TritonError.invalid_arg(
                f"model '{self.name}' version {ctx.version}: {self.model_file} not found")
        self.python, self.env = self._interpreter(cfg)
        self.execute_timeout = float(cfg.parameter("EXECUTE_TIMEOUT_SECONDS", "0") or 0) or None
        self._spare: Worker | None = None
        self.config = cfg
        w = Worker(self, "autocomplete", cfg.decoupled)
        w.start()
        try:
            if ctx.auto_complete and w.has_autocomplete is not False:
                new = w.call((_wire.AUTOCOMPLETE, config_to_json_dict(cfg)), backend.settings.stub_timeout,
                             what="auto_complete_config")
                if new[1] is not None:
                    cfg = parse_config_json(new[1], f"model '{self.name}': auto_complete_config")
            self.config = complete_config(cfg, self.name, BACKEND_NAME, (), DEFAULT_MODEL_FILENAME)
        except BaseException:
            w.stop()
            raise
        self._spare = w
        self.config_json = json.dumps(config_to_json_dict(self.config))

    def _interpreter(self, cfg: Any) -> tuple[str, dict[str, str]]:
        path = cfg.parameter("EXECUTION_ENV_PATH")
        if not path:
            return sys.executable, prestart.default_env()
        env = dict(os.environ)
        path = path.replace("$$TRITON_MODEL_DIRECTORY", str(self.ctx.model_path.absolute()))
        p = Path(path)
        if not p.is_absolute():
            p = self.ctx.model_path / p
        if p.is_file() and (p.name.endswith((".tar.gz", ".tgz", ".tar"))):
            p = self.backend.unpack_env(p)
        if not p.is_dir():
            raise TritonError.invalid_arg(
                f"model '{self.name}': EXECUTION_ENV_PATH '{path}' is neither a folder nor a "
                "conda-pack archive")
        for cand in ("bin/python3", "bin/python"):
            if (p / cand).exists():
                python = str(p / cand)
                break
        else:
            raise TritonError.invalid_arg(
                f"model '{self.name}': EXECUTION_ENV_PATH '{p}' holds no bin/python3 interpreter")
        env["PYTHONPATH"] = str(self.backend.shim_dir())
        env["PATH"] = str(p / "bin") + os.pathsep + env.get("PATH", "")
        env["VIRTUAL_ENV"] = str(p)
        env.pop("PYTHONHOME", None)
        lib = str(p / "lib")
        env["LD_LIBRARY_PATH"] = lib + (os.pathsep + env["LD_LIBRARY_PATH"]
                                        if env.get("LD_LIBRARY_PATH") else "")
        return python, env

    def init_args(self, ictx: abi.InstanceContext) -> dict[str, Any]:
        return {
            "model_config": self.config_json,
            "model_instance_kind": _KIND_ARG.get(ictx.kind, "CPU"),
            "model_instance_name": ictx.name,
            "model_instance_device_id": str(ictx.device_id),
            "model_repository": str(self.ctx.model_path.absolute()),
            "model_version": str(self.ctx.version),
            "model_name": self.name,
            "_decoupled": self.config.decoupled,
        }

    def take_spare(self) -> Worker | None:
        w, self._spare = self._spare, None
        return w

    def create_instance(self, ctx: abi.InstanceContext) -> PythonInstance:
        return PythonInstance(self, ctx)

    def close(self) -> None:
        w = self.take_spare()
        if w is not None:
            w.stop()


# ------------------------------------------------------------------ executes in flight

class _Pending:
    __slots__ = ("request", "block", "worker")

    def __init__(self, request: InferenceRequest, block: list, worker: Worker) -> None:
        self.request = request
        self.block = block  # [seg, offset, requests still open]
        self.worker = worker


class _Sent:
    """An EXEC frame on its way: what receiving its reply needs."""

    __slots__ = ("worker", "metas", "seg", "base", "timer", "send_error")

    def __init__(self, worker: Worker, metas: list, seg: int, base: int, timer: abi.ExecuteTimer,
                 send_error: OSError | None) -> None:
        self.worker = worker
        self.metas = metas
        self.seg = seg
        self.base = base
        self.timer = timer
        self.send_error = send_error


class _Started:
    """begin_execute's answer (abi.PendingExecute)."""

    __slots__ = ("instance", "sent", "requests", "timer")

    def __init__(self, instance: PythonInstance, sent: _Sent | None, requests: Any,
                 timer: abi.ExecuteTimer) -> None:
        self.instance = instance
        self.sent = sent
        self.requests = requests
        self.timer = timer

    def wait(self, timeout: float) -> bool:
        sent = self.sent
        # A failed send is reported by result() on a thread, where a restart may be awaited.
        return sent is not None and sent.send_error is None and sent.worker.exec_channel.reply_ready(timeout)

    def fileno(self) -> int | None:
        """The worker's channel: readable once the reply (or the worker's death) is there."""
        sent = self.sent
        if sent is None or sent.send_error is not None:
            return None
        return sent.worker.exec_channel.sock.fileno()

    def result(self) -> list[InferenceResponse] | None:
        inst, sent = self.instance, self.sent
        if sent is None:
            return inst.execute(self.requests, self.timer)
        return inst._finish(lambda: inst._receive(sent), self.requests, self.timer)  # noqa: SLF001


# ------------------------------------------------------------------ instance

class PythonInstance(abi.Instance):
    # The worker reads EXEC frames in order: one may wait while another runs.
    pipeline_depth = 2

    def __init__(self, model: PythonModel, ctx: abi.InstanceContext) -> None:
        self.model = model
        self.ctx = ctx
        self.args = model.init_args(ctx)
        self.pending: dict[int, _Pending] = {}
        self._tokens = iter(range(1, 1 << 62))
        self.cond = threading.Condition()
        self.closing = False
        self.restarts = 0
        self.last_failure = ""
        # Set before the worker starts: it may die (and on_death run on its reader
        # thread) before _start returns it.
        self.state = "starting"
        self.worker: Worker = None  # type: ignore[assignment]  # _start's below
        self.worker = self._start(model.take_spare())
        self.state = "ready"
        cfg = model.config
        # Triton's default: a python model gets its inputs in host memory, even on a GPU;
        # "no" passes inputs that lie in GPU memory (CUDA shared memory) on as they are
        self.gpu_inputs = ctx.kind == "KIND_GPU" and (
            cfg.parameter("FORCE_CPU_ONLY_INPUT_TENSORS", "yes") or "yes").lower() == "no"
        # The outputs a response may carry (Triton refuses any other name).
        self.allowed_outputs = {o.name for o in cfg.output} | {
            st["output_name"] for st in (cfg.sequence_batching or {}).get("state", []) or []
            if isinstance(st, dict) and "output_name" in st}

    def _start(self, w: Worker | None = None) -> Worker:
        m = self.model
        if w is None:
            w = Worker(m, self.ctx.name, m.config.decoupled, self)
            w.start()
        else:
            w.instance, w.instance_name = self, self.ctx.name
            if w.dead:  # died between auto-complete and now: start a fresh one
                w.stop()
                return self._start(None)
        try:
            w.call((_wire.INITIALIZE, dict(self.args)), m.backend.settings.stub_timeout,
                   what="initialize")
        except BaseException:
            w.instance = None
            w.stop()
            raise
        if w.has_is_ready:
            # ask now, once the model object exists (asked before initialize, is_ready()
            # had no model to run on): the first probe then has the model's own answer
            w.control_channel.ready_now()
        return w

    # readiness -----------------------------------------------------------------
    def is_ready(self) -> bool:
        w = self.worker
        if self.state != "ready" or w.dead or (w.process.exited()):
            return False
        if w.has_is_ready:
            return w.control_channel.ready_now()  # never waits: probes run on the event loop
        return True

    # death and restart ---------------------------------------------------------------
    def on_death(self, w: Worker, killed_for: str = "") -> None:
        """``w`` is gone (or was killed for ``killed_for``): fail its requests, restart it.

        Called by whichever notices first: the instance thread (execute saw the channel
        close, or killed the worker after EXECUTE_TIMEOUT_SECONDS) or the worker's async
        reader thread (EOF). The first call moves the instance out of "ready" before it
        returns, so no later execute is sent to the dead worker.
        """
        with self.cond:
            if w is not self.worker or self.closing or w.stopping or self.state != "ready":
                return
            self.state = "restarting"
        w.dead = True
        if killed_for:
            reason = killed_for
            log.error("python backend: the worker of %s was killed (%s); restarting it",
                      w.describe(), reason)
            err = f"the python backend worker of {w.describe()} was killed ({reason})"
        else:
            reason = w.wait_exit_reason()
            log.error("python backend: the worker of %s exited unexpectedly (%s); restarting it",
                      w.describe(), reason)
            err = f"the python backend worker of {w.describe()} exited unexpectedly ({reason})"
        self.last_failure = reason
        self._fail_pending(w, TritonError.unavailable(err))
        threading.Thread(target=self._restart, args=(w,), name="pb-restart", daemon=True).start()

    def _fail_pending(self, w: Worker, err: TritonError) -> None:
        for token, p in list(self.pending.items()):
            if p.worker is not w or not w.arenas.accepted(p.block[0], p.block[1]):
                continue  # not accepted: the execute thread still owns it and will retry it
            self.pending.pop(token, None)
            sender = p.request.sender
            if sender is not None and not sender.closed:
                try:
                    sender.send(InferenceResponse(error=err), RESPONSE_COMPLETE_FINAL)
                except TritonError:
                    pass

    def _restart(self, old: Worker) -> None:
        old.stop(finalize_timeout=0)
        delay = 0.5
        while True:
            with self.cond:
                if self.closing:
                    return
            try:
                w = self._start(None)
            except TritonError as e:
                self.last_failure = e.message
                log.error("python backend: restarting %s failed: %s", old.describe(), e.message)
                with self.cond:
                    self.cond.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            with self.cond:
                if self.closing:
                    w.stop()
                    return
                self.worker = w
                self.restarts += 1
                self.state = "ready"
                self.cond.notify_all()
            log.info("python backend: %s restarted", w.describe())
            return

    def _ready_worker(self) -> Worker:
        if self.state == "ready":
            return self.worker
        deadline = time.monotonic() + self.model.backend.settings.stub_timeout
        with self.cond:
            while self.state != "ready" and not self.closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            if self.state == "ready":
                return self.worker
        raise TritonError.unavailable(
            f"model '{self.model.name}' instance '{self.ctx.name}' is not ready: its python "
            f"backend worker is restarting (last failure: {self.last_failure})")

    # execute -------------------------------------------------------------------------
    def execute(self, requests: Any, timer: abi.ExecuteTimer) -> list[InferenceResponse] | None:
        return self._finish(lambda: self._execute(self._ready_worker(), requests, timer),
                            requests, timer)

    def begin_execute(self, requests: Any, timer: abi.ExecuteTimer) -> _Started:
        if self.state != "ready":  # restarting: the whole wait belongs on a thread
            return _Started(self, None, requests, timer)
        return _Started(self, self._send(self.worker, requests, timer), requests, timer)

    def _finish(self, run: Any, requests: Any, timer: abi.ExecuteTimer
                ) -> list[InferenceResponse] | None:
        try:
            return run()
        except _NotStarted as e:
            # The worker died while idle (OOM killer, kill -9) and nobody had noticed yet:
            # the batch never reached it, so wait for the restart and run it on the new one.
            w = e.args[0]
            log.warning("python backend: %s was found dead before it accepted a request; "
                        "retrying the request on its replacement", w.describe())
            self.on_death(w)
            new = self._ready_worker()
            if new is w:  # not replaced (the instance is closing)
                raise TritonError.unavailable(e.args[1]) from None
            try:
                return self._execute(new, requests, timer)
            except _NotStarted as e2:
                self.on_death(e2.args[0])
                raise TritonError.unavailable(e2.args[1]) from None

    def _execute(self, w: Worker, requests: Any, timer: abi.ExecuteTimer
                 ) -> list[InferenceResponse] | None:
        return self._receive(self._send(w, requests, timer))

    def _send(self, w: Worker, requests: Any, timer: abi.ExecuteTimer) -> _Sent:
        arena = w.arenas.s_arena
        assert arena is not None
        raws = []
        total = 0
        gpu_inputs = self.gpu_inputs
        for r in requests:
            for t in r.inputs.values():
                dev = t.device_array()
                if dev is not None and gpu_inputs and dev.ipc is not None:
                    raws.append((t, dev, dev.nbytes, -1))  # the worker maps it by its handle
                    continue
                raw = t.to_bytes()
                n = _nbytes(raw)
                raws.append((t, raw, n, total))
                total += (n + 63) & ~63
        seg, base = arena.alloc(total)
        mv = arena.segs[seg]
        mv[base - _arena.ACCEPTED_AT] = 0  # the worker sets it when it reads the EXEC frame
        metas = []
        i = 0
        block = [seg, base, len(requests)]
        pending = self.pending
        for r in requests:
            token = next(self._tokens)
            ins = []
            for _ in range(len(r.inputs)):
                t, raw, n, rel = raws[i]
                i += 1
                if rel < 0:  # GPU memory: (handle, offset) of the client's allocation
                    handle, at = raw.ipc
                    ins.append((t.name, t.datatype.value, t.shape, -1, at, n, handle,
                                raw.device_id))
                    continue
                off = base + rel
                if n:
                    mv[off:off + n] = raw if not isinstance(raw, memoryview) else raw.cast("B")
                ins.append((t.name, t.datatype.value, t.shape, seg, off, n))
            outs = r.outputs
            metas.append((token, r.id, r.correlation_id, r.flags, r.timeout_us,
                          json.dumps(r.parameters) if r.parameters else "", tuple(ins),
                          None if outs is None else tuple(o.name for o in outs)))
            pending[token] = _Pending(r, block, w)
        timer.compute_start()
        return _Sent(w, metas, seg, base, timer,
                     w.exec_channel.send_exec((_wire.EXEC, tuple(metas), (seg, base))))

    def _receive(self, sent: _Sent) -> list[InferenceResponse] | None:
        w, metas, seg, base, pending = sent.worker, sent.metas, sent.seg, sent.base, self.pending
        arenas = w.arenas
        arena = arenas.s_arena
        assert arena is not None
        try:
            reply = w.exec_channel.receive(sent.send_error)
        except WorkerDied as e:
            for m in metas:
                pending.pop(m[0], None)
            if not arenas.accepted(seg, base):
                raise _NotStarted(w, str(e)) from None
            self.on_death(w)
            raise TritonError.unavailable(str(e)) from None
        except WorkerTimedOut as e:
            for m in metas:
                pending.pop(m[0], None)
            # Leave "ready" now, not when the async reader notices the EOF: a request
            # arriving in between would otherwise be sent to the killed worker.
            self.on_death(w, killed_for=f"execute ran past EXECUTE_TIMEOUT_SECONDS="
                                        f"{self.model.execute_timeout:g}")
            raise TritonError.unavailable(str(e)) from None
        except TritonError:
            for m in metas:
                pending.pop(m[0], None)
            raise
        finally:
            sent.timer.compute_end()
        if reply[0] == _wire.ERR:
            for m in metas:
                pending.pop(m[0], None)
            arena.free(seg, base)
            raise _error(reply[1], reply[2])
        if w.decoupled:
            return None
        for m in metas:
            pending.pop(m[0], None)
        arena.free(seg, base)
        check, to_response = self._check_outputs, arenas.to_response
        return [check(to_response(m)) for m in reply[1]]

    def _check_outputs(self, resp: InferenceResponse) -> InferenceResponse:
        """A response naming an output its config does not declare is an error response
        for that request (Triton's InferenceResponse::AddOutput refuses the output)."""
        allowed = self.allowed_outputs
        for t in resp.outputs:
            if t.name not in allowed:
                return InferenceResponse(error=TritonError.invalid_arg(
                    f"unexpected inference output '{t.name}' for model '{self.model.name}'"))
        return resp

    def on_send(self, w: Worker, token: int, flags: int, meta: tuple | None) -> None:
        """A decoupled response from the worker's async channel."""
        p = self.pending.get(token)
        if p is None:
            return
        resp = self._check_outputs(w.arenas.to_response(meta)) if meta is not None else None
        final = bool(flags & RESPONSE_COMPLETE_FINAL)
        if final:
            self.pending.pop(token, None)
        sender = p.request.sender
        if sender is None or sender.closed:
            return
        try:
            sender.send(resp, flags)
        except TritonError as e:
            log.warning("python backend: %s: dropped a response: %s", w.describe(), e.message)
        if final:
            with self.cond:
                p.block[2] -= 1
                done = p.block[2] == 0
            arena = w.arenas.s_arena
            if done and p.worker is self.worker and arena is not None:
                arena.free(p.block[0], p.block[1])

    # close ------------------------------------------------------------------------------
    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        w = self.worker
        if w is None:
            return
        if self.pending or w.exec_channel.outstanding:
            # The core waited for in-flight requests until its unload deadline: an execute
            # still running is hung, and finalize would wait behind it. Kill the worker
            # (the execute fails as the worker's death).
            log.error("python backend: %s still executing at unload; killing its worker",
                      w.describe())
            w.stopping = True
            w.kill()
            w.dead = True  # no finalize: the execute thread owns the channel's reader
            w.stop()
        else:
            w.stop(finalize_timeout=self.model.backend.settings.stub_timeout)
        self._fail_pending(w, TritonError.unavailable(
            f"model '{self.model.name}' is unloading"))
