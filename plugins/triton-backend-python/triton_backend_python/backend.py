"""The python backend, server side: models, instances and their worker processes.

Each instance owns one worker process (triton_python_backend_utils._stub)
running the user's model.py; the server never imports user code. Per worker:

- the execute channel (a socketpair): the instance thread sends one EXEC frame
  per batch and reads the reply itself (no thread hand-off on the hot path);
- the async channel (a second socketpair): decoupled responses, BLS calls,
  model control, logs and metrics, read by one thread per worker; BLS and
  model loads run on the backend's thread pool;
- two shared-memory arenas (native layer regions): the server's, holding
  request inputs and BLS responses, and the worker's, holding response outputs
  and BLS inputs. Frames only name (segment, offset, size). Segments are
  unlinked as soon as both processes mapped them, so nothing is left behind.

A worker that dies fails what it had in flight, the instance reports not ready,
and a new worker is started (with back-off while it keeps failing).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import triton_python_backend_utils as _pbu
from triton_core import abi
from triton_core.config import config_to_json_dict, parse_config_json
from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.memory.shm import SharedMemoryError, SharedMemoryRegion
from triton_core.models.defaults import complete_config
from triton_core.request import (
    RESPONSE_COMPLETE_FINAL,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
)
from triton_core.tensor import Tensor
from triton_python_backend_utils import _arena, _wire

from .metrics import STORE

# ABI 1.3; an older core has no load signal
_server_saturated = getattr(abi, "server_saturated", lambda: False)

log = logging.getLogger("triton_core.python")

BACKEND_NAME = "python"
DEFAULT_MODEL_FILENAME = "model.py"
_PKG_DIR = Path(_pbu.__file__).resolve().parent  # triton_python_backend_utils/
_ZERO_COPY = 1 << 16  # outputs at least this large are served from the arena without a copy
_CODES = {name: i for i, name in enumerate(_wire.CODES)}
_WIRE = {dt.value: (dt, np.dtype(dt.numpy) if dt is not DataType.BYTES else np.dtype(object))
         for dt in DataType}  # wire name -> (DataType, numpy dtype)
_new_tensor = object.__new__
_LOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: 5}
_KIND_ARG = {"KIND_CPU": "CPU", "KIND_GPU": "GPU", "KIND_MODEL": "MODEL", "KIND_AUTO": "CPU"}

_BOOT = (
    "import sys\n"
    "try:\n"
    "    from triton_python_backend_utils._stub import main\n"
    "except BaseException as e:\n"
    "    import marshal, socket, struct\n"
    "    m = '%s: %s (python %s at %s)' % (type(e).__name__, e, sys.version.split()[0],"
    " sys.executable)\n"
    "    d = marshal.dumps((27, m), 2)\n"
    "    socket.socket(fileno=int(sys.argv[2])).sendall(struct.pack('<I', len(d)) + d)\n"
    "    sys.exit(3)\n"
    "main()\n"
)


class WorkerDied(Exception):
    pass


class _NotStarted(Exception):
    """The worker died before it read the EXEC frame: the batch never ran, retry it."""


class WorkerTimedOut(Exception):
    """execute ran past EXECUTE_TIMEOUT_SECONDS; the worker has been killed."""


def _nbytes(raw: Any) -> int:
    return raw.nbytes if isinstance(raw, memoryview) else len(raw)


def _error(code: int, msg: str) -> TritonError:
    name = _wire.CODES[code] if 0 <= code < len(_wire.CODES) else "INTERNAL"
    return TritonError(ErrorCode(name), msg)


def _shm_free() -> str:
    try:
        st = os.statvfs("/dev/shm")
        return f"; /dev/shm has {st.f_bavail * st.f_frsize} bytes free"
    except OSError:
        return ""


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
        # Both sides poll a while before sleeping in the kernel: a process wake-up costs
        # ~30 us on small VMs, more than a small model's whole execute.
        self.spin_s = max(0.0, num("spin-microseconds", 1000)) / 1e6


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
        env = dict(os.environ)
        path = cfg.parameter("EXECUTION_ENV_PATH")
        if not path:
            pp = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(_PKG_DIR.parent) + (os.pathsep + pp if pp else "")
            return sys.executable, env
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


# ------------------------------------------------------------------ worker process

class _Pending:
    __slots__ = ("request", "block", "worker")

    def __init__(self, request: InferenceRequest, block: list, worker: Worker) -> None:
        self.request = request
        self.block = block  # [seg, offset, requests still open]
        self.worker = worker


_NO_TIMEOUT = 365 * 86400.0  # "no execute timeout", as a socket timeout


# A model's is_ready() that has not answered for this long reads as not ready.
READY_TIMEOUT_S = 5.0


class _ReadyAnswer:
    """Where a background is_ready() answer goes (the reader thread calls put)."""

    __slots__ = ("worker",)

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def put(self, reply: tuple) -> None:
        ok, value = reply
        w = self.worker
        w._ready_answer = bool(ok and value)  # noqa: SLF001 - the worker's own cache
        w._ready_asked_at = 0.0  # noqa: SLF001


class Worker:
    """One worker process and everything it shares with the server."""

    def __init__(self, model: PythonModel, instance_name: str, decoupled: bool,
                 instance: PythonInstance | None = None) -> None:
        self.model = model
        self.instance = instance
        self.instance_name = instance_name
        self.decoupled = decoupled
        self.settings = model.backend.settings
        # Unguessable (64 random bits), and short enough for macOS (31 bytes with "s<seg>").
        # A guess would not help anyway: the client shared-memory API refuses the server's
        # own segments by identity (triton_core.memory.shm.is_server_segment), and each is
        # unlinked as soon as both processes mapped it.
        self.prefix = f"/tpb{os.getpid() % 0xFFFFF:x}{secrets.token_hex(8)}"
        self.regions: dict[str, SharedMemoryRegion] = {}
        self.w_segs: list[memoryview] = []
        self.proc: subprocess.Popen | None = None
        self.exec_sock: socket.socket | None = None
        self.async_sock: socket.socket | None = None
        self.async_lock = threading.Lock()
        self.s_arena: _arena.Arena | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.has_autocomplete: bool | None = None
        self.has_is_ready = False
        self.dead = False
        self.stopping = False
        self.fatal = ""
        self.python_version = ""
        self._calls: dict[int, Any] = {}
        self._ids = iter(range(1, 1 << 62))
        self._threads: list[threading.Thread] = []
        self._async_running = False  # the async reader thread owns async_sock
        self._poll: Any = None  # select.poll on exec_sock, made on first use
        self._spin_pays = True  # the last reply came within spin-microseconds
        self._sent_at = 0.0
        self._outstanding = 0  # EXEC frames sent whose reply is not read yet

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def describe(self) -> str:
        return f"model '{self.model.name}' (instance '{self.instance_name}', pid {self.pid})"

    # shared memory ----------------------------------------------------------
    def _create(self, name: str, size: int) -> memoryview:
        try:
            region = SharedMemoryRegion.create(name, size)
        except (SharedMemoryError, OSError) as e:
            raise TritonError.unavailable(
                f"python backend: cannot create the shared-memory region '{name}' of {size} bytes "
                f"for {self.describe()}: {e.strerror or e}{_shm_free()}") from None
        self.regions[region.name] = region
        if sys.platform.startswith("linux"):
            # Reserve the pages now: without this a full /dev/shm shows up later as SIGBUS.
            try:
                fd = os.open("/dev/shm/" + region.name.lstrip("/"), os.O_RDWR)
                try:
                    os.posix_fallocate(fd, 0, size)
                finally:
                    os.close(fd)
            except OSError as e:
                self._unlink(region.name)
                raise TritonError.unavailable(
                    f"python backend: the OS refused {size} bytes of shared memory for region "
                    f"'{name}' of {self.describe()}: {e.strerror}{_shm_free()} (enlarge /dev/shm, "
                    "e.g. docker --shm-size, or lower shm-default-byte-size)") from None
        return region.buffer()

    def _unlink(self, name: str) -> None:
        region = self.regions.get(name)
        if region is not None and not getattr(region, "_unlinked", False):
            try:
                region.unlink()
            except OSError:
                pass
            region._unlinked = True  # type: ignore[attr-defined]

    def _new_s_segment(self, seg_id: int, min_size: int) -> memoryview:
        size = max(min_size, self.settings.shm_default if seg_id == 0 else self.settings.shm_growth)
        return self._create(f"{self.prefix}s{seg_id}", size)

    # start-up -----------------------------------------------------------------
    def start(self) -> None:
        st = self.settings
        m = self.model
        self.s_arena = _arena.Arena(self._new_s_segment, st.shm_default, st.shm_growth)
        self.w_segs.append(self._create(f"{self.prefix}w0", st.shm_default))
        ea, eb = socket.socketpair()
        aa, ab = socket.socketpair()
        self.exec_sock, self.async_sock = ea, aa
        self.reader = _wire.Reader(ea)
        cmd = [m.python, "-c", _BOOT, str(eb.fileno()), str(ab.fileno())]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(eb.fileno(), ab.fileno()), env=m.env,
                                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         cwd=str(m.model_file.parent))
        except OSError as e:
            self.stop()
            raise TritonError.invalid_arg(
                f"model '{m.name}': cannot start the python interpreter '{m.python}': {e}") from None
        finally:
            eb.close()
            ab.close()
        m.backend.workers.add(self)
        t = threading.Thread(target=self._forward_stderr, name=f"pb-stderr-{self.pid}", daemon=True)
        t.start()
        self._threads.append(t)
        settings = {"prefix": self.prefix, "model_name": m.name, "decoupled": self.decoupled,
                    "model_file": str(m.model_file), "w_size": len(self.w_segs[0]),
                    "growth": st.shm_growth, "spin_us": st.spin_s * 1e6}
        try:
            reply = self.call((_wire.INIT, settings), st.stub_timeout, what="start-up")
        except BaseException:
            self.stop()
            raise
        self.has_autocomplete = None
        self.has_is_ready = bool(reply[1])
        self._ready_answer = True  # the model's last is_ready() answer (ready_now)
        self._ready_asked_at = 0.0  # when the question now out was asked (0: none)
        self.python_version = reply[2]
        for name in list(self.regions):  # both processes mapped segment 0 of each arena
            self._unlink(name)
        t = threading.Thread(target=self._async_loop, name=f"pb-async-{self.pid}", daemon=True)
        self._async_running = True
        t.start()
        self._threads.append(t)
        if self.has_is_ready:
            self.ready_now()  # ask now: the first probe then has the model's own answer

    def _forward_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        out = sys.stderr
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.stderr_tail.append(line.rstrip("\n"))
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                pass

    def call(self, msg: tuple, timeout: float | None, what: str) -> tuple:
        """One request / reply on the execute channel (start-up, auto-complete, initialize)."""
        sock = self.exec_sock
        assert sock is not None
        sock.settimeout(timeout)
        try:
            sock.sendall(_wire.encode(msg))
            reply = self.reader.read()
        except TimeoutError:
            self.kill()
            raise TritonError.unavailable(
                f"python backend: {what} of {self.describe()} did not finish within {timeout:g} s "
                "(backend config stub-timeout-seconds); the worker was killed") from None
        except (_wire.ChannelClosed, OSError):
            raise TritonError.internal(
                f"python backend: the worker of {self.describe()} exited during {what}: "
                f"{self.exit_reason()}") from None
        finally:
            if not self.dead:
                try:
                    # Never None: an event loop watching the socket (the core's
                    # LoopPipeline) leaves it O_NONBLOCK, which only a timeout copes with.
                    sock.settimeout(self.model.execute_timeout or _NO_TIMEOUT)
                except OSError:
                    pass
        if reply[0] == _wire.ERR:
            raise TritonError.internal(
                f"python backend: {what} of model '{self.model.name}' failed: {reply[2]}")
        return reply

    def exit_reason(self) -> str:
        self.dead = True
        if not self.fatal and self.async_sock is not None and not self._async_running:
            try:  # the bootstrap reports why it could not start on the async channel
                self.async_sock.settimeout(0.5)
                msg = _wire.Reader(self.async_sock).read()
                if msg[0] == _wire.FATAL:
                    self.fatal = msg[1]
            except (OSError, _wire.ChannelClosed, ValueError, EOFError, TypeError):
                pass
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None
        if rc is None:
            why = "the channel closed"
        elif rc < 0:
            try:
                why = f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                why = f"killed by signal {-rc}"
        else:
            why = f"exit code {rc}"
        parts = [why]
        if self.fatal:
            parts.append(f"the worker could not start under '{self.model.python}': {self.fatal}")
        tail = [x for x in self.stderr_tail if x.strip()][-5:]
        if tail:
            parts.append("last output: " + " | ".join(tail))
        return "; ".join(parts)

    # execute channel (hot path) -----------------------------------------------
    def execute(self, msg: tuple) -> tuple:
        return self.receive(self.send_exec(msg))

    def send_exec(self, msg: tuple) -> OSError | None:
        """Send an EXEC frame; a failure is returned for receive() to report."""
        # lone: tells the worker whether spinning for the next request pays; not
        # while the server's loop is saturated: the spin would take its core
        data = _wire.encode((*msg, self._outstanding == 0 and not _server_saturated()))
        self._outstanding += 1  # receive() takes it back, whatever the send did
        try:
            self.exec_sock.sendall(data)  # type: ignore[union-attr]
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
                # Inside the try: the async reader may have seen the worker die and
                # closed the socket already (fileno -1: ValueError).
                p = select.poll()
                p.register(self.exec_sock, select.POLLIN)
                self._poll = p
            poll, clock = self._poll.poll, time.perf_counter
            end = clock() + timeout
            spin = min(self.settings.spin_s, timeout)
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
        sock = self.exec_sock
        if sock is None:
            return False
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
        self._outstanding -= 1
        try:
            if send_error is not None:
                raise send_error
            spin = self.settings.spin_s
            if spin:
                self.reply_ready(spin)
                reply = self.reader.read()
                # spin for the next reply only if this one came within the window
                self._spin_pays = time.perf_counter() - self._sent_at <= spin
                return reply
            return self.reader.read()
        except TimeoutError:
            self.kill()
            raise WorkerTimedOut(
                f"model '{self.model.name}': execute did not finish within "
                f"{self.model.execute_timeout:g} s (EXECUTE_TIMEOUT_SECONDS); its worker was "
                "killed and is restarting") from None
        except (_wire.ChannelClosed, OSError):
            raise WorkerDied(
                f"the python backend worker of {self.describe()} exited unexpectedly "
                f"({self.exit_reason()}); it is being restarted") from None

    def accepted(self, seg: int, base: int) -> bool:
        """Whether the worker read the EXEC frame whose input block is at (seg, base)."""
        arena = self.s_arena
        return arena is None or arena.segs[seg][base - _arena.ACCEPTED_AT] != 0

    # async channel --------------------------------------------------------------
    def post(self, msg: tuple) -> None:
        data = _wire.encode(msg)
        with self.async_lock:
            try:
                self.async_sock.sendall(data)  # type: ignore[union-attr]
            except OSError:
                pass  # the reader notices the death

    def _async_loop(self) -> None:
        reader = _wire.Reader(self.async_sock)  # type: ignore[arg-type]
        while True:
            try:
                msg = reader.read()
            except (_wire.ChannelClosed, OSError, ValueError):
                break
            try:
                self._dispatch(msg)
            except Exception:  # noqa: BLE001 - one bad message must not stop the channel
                log.exception("python backend: %s: handling a %s message failed",
                              self.describe(), msg[0])
        self.dead = True
        STORE.drop_owner(self)
        for call in list(self._calls.values()):
            call.put((False, (1, "worker exited")))
        if self.instance is not None:
            self.instance.on_death(self)

    def _dispatch(self, msg: tuple) -> None:
        kind = msg[0]
        inst = self.instance
        if kind == _wire.SEND:
            if inst is not None:
                inst.on_send(self, msg[1], msg[2], msg[3])
        elif kind == _wire.LOG:
            log.log(_LOG_LEVELS.get(msg[1], logging.INFO), "%s: %s", self.model.name, msg[2])
        elif kind == _wire.METRIC:
            STORE.update(self, msg[1], msg[2], msg[3])
        elif kind == _wire.MAPPED:
            self._unlink(f"{self.prefix}{msg[1]}{msg[2]}")
        elif kind == _wire.GROW:
            seg_id, min_size = msg[2]
            try:
                mv = self._create(f"{self.prefix}w{seg_id}",
                                  max(self.settings.shm_growth, int(min_size)))
                self.w_segs.append(mv)
                self.post((_wire.CTRL_RESP, msg[1], True, f"{self.prefix}w{seg_id}"))
            except TritonError as e:
                self.post((_wire.CTRL_RESP, msg[1], False, (_CODES[e.code.value], e.message)))
        elif kind == _wire.BLS:
            self.model.backend.pool.submit(self._serve_bls, msg[1], msg[2], msg[3])
        elif kind == _wire.CTRL:
            self._ctrl(msg[1], msg[2], msg[3])
        elif kind == _wire.CTRL_RESP:  # the answer to a question the server asked
            q = self._calls.pop(msg[1], None)
            if q is not None:
                q.put((msg[2], msg[3]))
        elif kind == _wire.FATAL:
            self.fatal = msg[1]

    def _reply(self, cid: int, fn: Any, *args: Any) -> None:
        try:
            value = fn(*args)
            self.post((_wire.CTRL_RESP, cid, True, value))
        except TritonError as e:
            self.post((_wire.CTRL_RESP, cid, False, (_CODES[e.code.value], e.message)))
        except Exception as e:  # noqa: BLE001
            self.post((_wire.CTRL_RESP, cid, False, (1, f"{type(e).__name__}: {e}")))

    def _ctrl(self, cid: int, op: str, args: Any) -> None:
        server = self.model.server
        if op == "cancelled":
            p = self.instance.pending.get(args) if self.instance is not None else None
            self.post((_wire.CTRL_RESP, cid, True, bool(p is not None and p.request.cancelled)))
        elif op == "metric_family":
            self._reply(cid, STORE.add_family, self, *args)
        elif op == "metric":
            self._reply(cid, STORE.add_metric, self, *args)
        elif op == "metric_value":
            self._reply(cid, STORE.value, self, args)
        elif op == "ready":
            self._reply(cid, lambda n, v: server.model_ready(n, v or None), *args)
        elif op == "load":
            name, config, files = args
            files = {k[5:] if k.startswith("file:") else k: v for k, v in files.items()}
            self.model.backend.pool.submit(
                self._reply, cid, lambda: server.load_model(name, config or None, files or None))
        elif op == "unload":
            self.model.backend.pool.submit(self._reply, cid, lambda: server.unload_model(args))
        else:
            self.post((_wire.CTRL_RESP, cid, False, (5, f"unknown operation '{op}'")))

    def ask_is_ready(self, timeout: float = 5.0) -> bool:
        """The model's is_ready() answer, waited for (load time only: never on a probe)."""
        import queue

        q: queue.SimpleQueue = queue.SimpleQueue()
        cid = next(self._ids)
        self._calls[cid] = q
        self.post((_wire.IS_READY_Q, cid))
        try:
            ok, value = q.get(timeout=timeout)
        except queue.Empty:
            self._calls.pop(cid, None)
            return False
        return bool(ok and value)

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
        self._calls[cid] = _ReadyAnswer(self)
        self.post((_wire.IS_READY_Q, cid))
        return self._ready_answer

    # tensors ----------------------------------------------------------------------
    def output_tensor(self, meta: tuple) -> Tensor:
        name, wire, shape, seg, off, size = meta
        mv = self.w_segs[seg]
        dt, npdt = _WIRE[wire]
        if size >= _ZERO_COPY and dt is not DataType.BYTES:
            arr = np.frombuffer(mv, dtype=npdt, count=size // npdt.itemsize,
                                offset=off).reshape(shape)
            weakref.finalize(arr, _arena.release, mv, off)
            return Tensor(name, dt, shape, array=arr, raw=memoryview(arr).cast("B"))
        raw = mv[off:off + size].tobytes()
        mv[off - _arena.HEADER] = _arena.RELEASED
        # Small outputs: the copied wire bytes only; the array is made if someone asks.
        # (Tensor.__init__ would re-check the shape marshal already gave as a tuple of ints.)
        t = _new_tensor(Tensor)
        t.name, t.datatype, t.shape, t._array, t._raw, t.parameters = name, dt, shape, None, raw, {}
        return t

    def to_response(self, meta: tuple) -> InferenceResponse:
        outs, params, err = meta
        ot = self.output_tensor
        resp = InferenceResponse(outputs=[ot(m) for m in outs])
        if params:
            resp.parameters = json.loads(params)
        if err is not None:
            resp.error = _error(err[0], err[1])
        return resp

    def write_response(self, resp: InferenceResponse | None) -> tuple | None:
        """A core response into the server arena (BLS responses)."""
        if resp is None:
            return None
        params = json.dumps(resp.parameters) if resp.parameters else ""
        if resp.error is not None:
            return ((), params, (_CODES[resp.error.code.value], resp.error.message))
        arena = self.s_arena
        assert arena is not None
        metas = []
        for t in resp.outputs:
            raw = t.to_bytes()
            n = _nbytes(raw)
            seg, off = arena.alloc(n)
            if n:
                arena.segs[seg][off:off + n] = raw if not isinstance(raw, memoryview) else raw.cast("B")
            metas.append((t.name, t.datatype.value, tuple(t.shape), seg, off, n))
        return (tuple(metas), params, None)

    def _serve_bls(self, cid: int, body: tuple, decoupled: bool) -> None:
        model, version, rid, corr, flags, timeout_us, params, inputs, outs = body
        server = self.model.server
        blocks = []
        try:
            tensors = {}
            for name, wire, shape, seg, off, size in inputs:
                mv = self.w_segs[seg]
                blocks.append((mv, off))
                dt = DataType.from_wire(wire)
                tensors[name] = Tensor.from_raw(name, dt, shape, mv[off:off + size])
            req = InferenceRequest(
                model_name=model, model_version=None if version < 0 else version, id=rid,
                inputs=tensors, outputs=None if outs is None else [RequestedOutput(o) for o in outs],
                parameters=json.loads(params) if params else {}, correlation_id=corr, flags=flags,
                timeout_us=int(timeout_us))
            if server is None:
                raise TritonError.unavailable("BLS needs the server")
            timeout = timeout_us / 1e6 if timeout_us > 0 else None
            try:
                for resp, final in server.infer_iter(req, timeout=timeout):
                    self.post((_wire.BLS_RESP, cid, final, self.write_response(resp)))
            except TritonError as e:
                if timeout is not None and "timed out" in e.message:
                    e = TritonError.unavailable(
                        f"BLS request to model '{model}' timed out: no response within "
                        f"{timeout_us} us (Request timeout expired)")
                raise e from None
        except TritonError as e:
            self.post((_wire.BLS_RESP, cid, True,
                       ((), "", (_CODES[e.code.value], e.message))))
        except Exception as e:  # noqa: BLE001 - returned to the model as an error response
            log.exception("python backend: BLS call from %s failed", self.describe())
            self.post((_wire.BLS_RESP, cid, True, ((), "", (1, f"{type(e).__name__}: {e}"))))
        finally:
            for mv, off in blocks:
                _arena.release(mv, off)

    # shutdown ---------------------------------------------------------------------
    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass

    def stop(self, finalize_timeout: float = 30.0) -> None:
        """finalize() in the worker, then reap it and free its shared memory."""
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None and not self.dead and self.exec_sock:
            try:
                self.exec_sock.settimeout(finalize_timeout)
                self.exec_sock.sendall(_wire.encode((_wire.FINALIZE,)))
                reply = self.reader.read()
                if reply[0] == _wire.ERR:
                    log.error("python backend: finalize of %s failed: %s", self.describe(), reply[2])
            except (OSError, _wire.ChannelClosed):
                pass
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for s in (self.exec_sock, self.async_sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        for name in list(self.regions):
            self._unlink(name)
        STORE.drop_owner(self)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2)


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
        return sent is not None and sent.send_error is None and sent.worker.reply_ready(timeout)

    def fileno(self) -> int | None:
        """The worker's channel: readable once the reply (or the worker's death) is there."""
        sent = self.sent
        if sent is None or sent.send_error is not None:
            return None
        sock = sent.worker.exec_sock
        return None if sock is None else sock.fileno()

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
        return w

    # readiness -----------------------------------------------------------------
    def is_ready(self) -> bool:
        w = self.worker
        if self.state != "ready" or w.dead or (w.proc is not None and w.proc.poll() is not None):
            return False
        if w.has_is_ready:
            return w.ready_now()  # never waits: probes run on the event loop
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
        if killed_for:
            w.dead = True
            reason = killed_for
            log.error("python backend: the worker of %s was killed (%s); restarting it",
                      w.describe(), reason)
            err = f"the python backend worker of {w.describe()} was killed ({reason})"
        else:
            reason = w.exit_reason()
            log.error("python backend: the worker of %s exited unexpectedly (%s); restarting it",
                      w.describe(), reason)
            err = f"the python backend worker of {w.describe()} exited unexpectedly ({reason})"
        self.last_failure = reason
        self._fail_pending(w, TritonError.unavailable(err))
        threading.Thread(target=self._restart, args=(w,), name="pb-restart", daemon=True).start()

    def _fail_pending(self, w: Worker, err: TritonError) -> None:
        for token, p in list(self.pending.items()):
            if p.worker is not w or not w.accepted(p.block[0], p.block[1]):
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
        arena = w.s_arena
        assert arena is not None
        raws = []
        total = 0
        for r in requests:
            for t in r.inputs.values():
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
        return _Sent(w, metas, seg, base, timer, w.send_exec((_wire.EXEC, tuple(metas), (seg, base))))

    def _receive(self, sent: _Sent) -> list[InferenceResponse] | None:
        w, metas, seg, base, pending = sent.worker, sent.metas, sent.seg, sent.base, self.pending
        arena = w.s_arena
        assert arena is not None
        try:
            reply = w.receive(sent.send_error)
        except WorkerDied as e:
            for m in metas:
                pending.pop(m[0], None)
            if not w.accepted(seg, base):
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
        check = self._check_outputs
        return [check(w.to_response(m)) for m in reply[1]]

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
        resp = self._check_outputs(w.to_response(meta)) if meta is not None else None
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
            if done and p.worker is self.worker and w.s_arena is not None:
                w.s_arena.free(p.block[0], p.block[1])

    # close ------------------------------------------------------------------------------
    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        w = self.worker
        if w is None:
            return
        if self.pending or w._outstanding:  # noqa: SLF001
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
