"""The suite's machinery: one in-process Server over the backend's conformance
models, the backend wrapped so the core's side can watch every execute call,
HTTP / gRPC front ends on free ports, and one client interface per protocol."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from triton_core import abi
from triton_core.conformance_spec import ADD_SUB, IDENTITY, ConformanceSpec, ModelRole
from triton_core.dtypes import DataType
from triton_core.errors import TritonError
from triton_core.models.registry import ENV_DISABLE_AUTOLOAD, BackendEntry, BackendRegistry
from triton_core.request import InferenceRequest, RequestedOutput
from triton_core.server import Server
from triton_core.tensor import Tensor
from triton_core.testing import LoopThread, free_port, wait_until

from .data import bf16_to_fp32, fp32_to_bf16


def resolved(entry: Any) -> Any:
    """The entry with its availability known (a core that checks lazily runs it now)."""
    if entry is not None and hasattr(entry, "resolve"):
        entry.resolve()
    return entry


# ---------------------------------------------------------------------------
# Watching execute from the core's side


@dataclasses.dataclass
class InstanceRecord:
    model: str
    name: str
    active: int = 0
    max_active: int = 0
    threads: set[int] = dataclasses.field(default_factory=set)
    calls: list[int] = dataclasses.field(default_factory=list)  # requests per execute
    closed: bool = False


class Probe:
    """Counts concurrent execute calls per instance; records batches and threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: list[InstanceRecord] = []
        self.violations: list[str] = []

    def wrap_factory(self, factory: Any) -> Any:
        def make(ctx: abi.BackendContext) -> abi.Backend:
            return _Backend(factory(ctx), self)

        return make

    def records(self, model: str) -> list[InstanceRecord]:
        with self.lock:
            return [r for r in self.instances if r.model == model]


class _Proxy:
    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


class _Backend(_Proxy):
    def __init__(self, inner: abi.Backend, probe: Probe) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_probe", probe)

    def load_model(self, ctx: abi.ModelContext) -> Any:
        return _Model(self._inner.load_model(ctx), self._probe, ctx.name)

    def close(self) -> None:
        self._inner.close()


class _Model(_Proxy):
    def __init__(self, inner: abi.Model, probe: Probe, name: str) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_probe", probe)
        object.__setattr__(self, "_name", name)

    def create_instance(self, ctx: abi.InstanceContext) -> Any:
        rec = InstanceRecord(self._name, ctx.name)
        inner = self._inner.create_instance(ctx)
        proxy = _BeginInstance if callable(getattr(type(inner), "begin_execute", None)) and \
            type(inner).begin_execute is not abi.Instance.begin_execute else _Instance
        inst = proxy(inner, self._probe, rec)
        with self._probe.lock:
            self._probe.instances.append(rec)
        return inst

    def close(self) -> None:
        self._inner.close()


class _Instance(_Proxy):
    def __init__(self, inner: abi.Instance, probe: Probe, rec: InstanceRecord) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_probe", probe)
        object.__setattr__(self, "_rec", rec)

    def _enter(self, requests: Sequence[InferenceRequest], allowed: int = 1) -> None:
        rec, probe = self._rec, self._probe
        with probe.lock:
            rec.active += 1
            rec.max_active = max(rec.max_active, rec.active)
            rec.threads.add(threading.get_ident())
            rec.calls.append(len(requests))
            if rec.active > allowed:
                probe.violations.append(
                    f"model '{rec.model}' instance '{rec.name}': execute called while another "
                    "execute of the same instance was running")
            if rec.closed:
                probe.violations.append(
                    f"model '{rec.model}' instance '{rec.name}': execute called after close")

    def _leave(self) -> None:
        with self._probe.lock:
            self._rec.active -= 1

    def execute(self, requests: Sequence[InferenceRequest], timer: abi.ExecuteTimer) -> Any:
        self._enter(requests)
        try:
            return self._inner.execute(requests, timer)
        finally:
            self._leave()

    def close(self) -> None:
        with self._probe.lock:
            self._rec.closed = True
        self._inner.close()


class _BeginInstance(_Instance):
    """For backends with begin_execute: the started execute counts as running until
    its result is taken (the core finds the method on the class, so only these have it);
    up to the instance's pipeline_depth may be outstanding."""

    def begin_execute(self, requests: Sequence[InferenceRequest], timer: abi.ExecuteTimer) -> Any:
        # pipeline_depth: that many started executes may wait for their results at once
        self._enter(requests, max(1, int(getattr(self._inner, "pipeline_depth", 1))))
        try:
            pending = self._inner.begin_execute(requests, timer)
            # keep the backend's fileno(): without it the core never takes the event-loop
            # path (results read when the descriptor turns readable) it would take in service
            if callable(getattr(pending, "fileno", None)):
                return _ProbedPendingFd(pending, self)
            return _ProbedPending(pending, self)
        except BaseException:
            self._leave()
            raise


class _ProbedPending:
    def __init__(self, inner: Any, instance: _BeginInstance) -> None:
        self._inner = inner
        self._instance = instance

    def wait(self, timeout: float) -> bool:
        return self._inner.wait(timeout)

    def result(self) -> Any:
        try:
            return self._inner.result()
        finally:
            self._instance._leave()  # noqa: SLF001


class _ProbedPendingFd(_ProbedPending):
    def fileno(self) -> int | None:
        return self._inner.fileno()


# ---------------------------------------------------------------------------
# Front ends on free ports, in one background event loop


def grpc_frontend_class() -> tuple[Any, str]:
    """(GrpcFrontEnd class, "") or (None, the reason the core has none)."""
    try:
        from triton_core.frontends.grpc import GrpcFrontEnd  # type: ignore[import-not-found]
    except ImportError as e:
        return None, (f"this triton-core has no gRPC front end (triton_core.frontends.grpc is not "
                      f"importable: {e})")
    return GrpcFrontEnd, ""


class FrontEnds:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._loop = LoopThread("conformance-loop")
        self.loop = self._loop.loop
        self._http: Any = None
        self._http_fut: Any = None
        self._http_url = ""
        self._grpc: Any = None
        self._grpc_url = ""
        self._lock = threading.Lock()

    def http_url(self) -> str:
        with self._lock:
            if not self._http_url:
                from triton_core.frontends.http.app import HttpFrontEnd

                port = free_port()
                self._http = HttpFrontEnd(self.server)
                self._http_fut = self._loop.submit(self._http.serve("127.0.0.1", port))
                try:
                    wait_until(lambda: self._http.started or self._http_fut.done(),
                               "the HTTP front end to start", 15)
                except AssertionError:
                    raise RuntimeError("the HTTP front end did not start") from None
                if not self._http.started:
                    self._http_fut.result()  # its error
                    raise RuntimeError("the HTTP front end did not start")
                self._http_url = f"127.0.0.1:{port}"
            return self._http_url

    def grpc_url(self) -> str:
        with self._lock:
            if not self._grpc_url:
                cls, reason = grpc_frontend_class()
                if cls is None:
                    raise RuntimeError(reason)
                fe = cls(self.server, "127.0.0.1", 0)
                self._loop.run(fe.start(), 15)
                self._grpc = fe
                self._grpc_url = f"127.0.0.1:{fe.port}"
            return self._grpc_url

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            try:
                self._http_fut.result(10)
            except Exception:  # noqa: BLE001 - closing
                pass
        if self._grpc is not None:
            try:
                self._loop.run(self._grpc.stop(0.5), 10)
            except Exception:  # noqa: BLE001 - closing
                pass
        self._loop.close()


# ---------------------------------------------------------------------------
# One client interface per protocol


class InferError(Exception):
    """A refused or failed inference, with Triton's error code name (INVALID_ARG, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


_HTTP_CODES = {"400": "INVALID_ARG", "404": "NOT_FOUND", "503": "UNAVAILABLE", "501": "UNSUPPORTED",
               "500": "INTERNAL", "409": "ALREADY_EXISTS", "499": "CANCELLED"}
_GRPC_CODES = {"INVALID_ARGUMENT": "INVALID_ARG", "NOT_FOUND": "NOT_FOUND",
               "UNAVAILABLE": "UNAVAILABLE", "UNIMPLEMENTED": "UNSUPPORTED", "INTERNAL": "INTERNAL",
               "ALREADY_EXISTS": "ALREADY_EXISTS", "CANCELLED": "CANCELLED", "UNKNOWN": "UNKNOWN"}

Inputs = Sequence[tuple[str, str, np.ndarray]]  # (name, datatype, native array)


class Client:
    protocol = ""

    def infer(self, model: str, inputs: Inputs, outputs: Sequence[str] | None = None,
              version: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def infer_many(self, model: str, many: Sequence[Inputs], concurrency: int) -> list[dict[str, np.ndarray]]:
        """Every request in flight at once (up to ``concurrency``); results in order."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda ins: self.infer(model, ins), many))


class InProcessClient(Client):
    protocol = "inproc"

    def __init__(self, server: Server) -> None:
        self.server = server

    def infer(self, model, inputs, outputs=None, version=None):
        req = InferenceRequest(
            model_name=model, model_version=version,
            inputs={n: Tensor.from_numpy(n, a, DataType(dt)) for n, dt, a in inputs},
            outputs=[RequestedOutput(o) for o in outputs] if outputs is not None else None)
        try:
            resp = self.server.infer(req, timeout=60)
        except TritonError as e:
            raise InferError(e.code.value, e.message) from None
        return {t.name: t.as_numpy() for t in resp.outputs}


def _to_client_array(dt: str, a: np.ndarray) -> np.ndarray:
    if dt == "BF16":
        try:  # tritonclient >= 2.58 (r26.06) takes BF16 as ml_dtypes.bfloat16
            import ml_dtypes

            return np.ascontiguousarray(a, dtype=np.uint16).view(ml_dtypes.bfloat16)
        except ImportError:  # older clients: float32, truncated to bfloat16
            return bf16_to_fp32(a)
    return a


def _from_client_array(dt: str, a: np.ndarray) -> np.ndarray:
    if dt == "BF16":
        if a.dtype.itemsize == 2:
            return np.ascontiguousarray(a).view(np.uint16)
        return fp32_to_bf16(a)
    if dt == "BYTES":
        out = np.empty(a.shape, dtype=object)
        out.reshape(-1)[:] = [x if isinstance(x, bytes) else str(x).encode() for x in a.reshape(-1)]
        return out
    return a


class HttpClient(Client):
    protocol = "http"

    def __init__(self, url: str) -> None:
        import tritonclient.http as httpclient

        self.mod = httpclient
        self.url = url
        self.client = httpclient.InferenceServerClient(url, concurrency=8, network_timeout=60)

    def _error(self, e: Exception) -> InferError:
        status = str(getattr(e, "status", lambda: "")() or "")
        return InferError(_HTTP_CODES.get(status, f"HTTP {status}"), str(getattr(e, "message",
                                                                                lambda: e)()))

    def _inputs(self, inputs: Inputs) -> list:
        ins = []
        for n, dt, a in inputs:
            i = self.mod.InferInput(n, list(a.shape), dt)
            i.set_data_from_numpy(_to_client_array(dt, a), binary_data=True)
            ins.append(i)
        return ins

    @staticmethod
    def _result(r: Any) -> dict[str, np.ndarray]:
        return {o["name"]: _from_client_array(o["datatype"], r.as_numpy(o["name"]))
                for o in r.get_response()["outputs"]}

    def infer(self, model, inputs, outputs=None, version=None):
        from tritonclient.utils import InferenceServerException

        outs = [self.mod.InferRequestedOutput(o, binary_data=True) for o in outputs] \
            if outputs is not None else None
        try:
            r = self.client.infer(model, self._inputs(inputs), model_version=str(version or ""),
                                  outputs=outs)
        except InferenceServerException as e:
            raise self._error(e) from None
        return self._result(r)

    def infer_many(self, model, many, concurrency):
        # tritonclient.http is gevent-based: one client is not shared across OS threads;
        # async_infer keeps up to `concurrency` requests in flight from this thread.
        from tritonclient.utils import InferenceServerException

        client = self.mod.InferenceServerClient(self.url, concurrency=concurrency, network_timeout=60)
        try:
            pending = [client.async_infer(model, self._inputs(ins)) for ins in many]
            out = []
            for p in pending:
                try:
                    out.append(self._result(p.get_result()))
                except InferenceServerException as e:
                    raise self._error(e) from None
            return out
        finally:
            client.close()

    def close(self) -> None:
        self.client.close()


class GrpcClient(Client):
    protocol = "grpc"

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient

        self.mod = grpcclient
        self.url = url
        self.client = grpcclient.InferenceServerClient(url)

    @staticmethod
    def error(e: Exception) -> InferError:
        status = str(getattr(e, "status", lambda: "")() or "").removeprefix("StatusCode.")
        return InferError(_GRPC_CODES.get(status, f"gRPC {status}"), str(getattr(e, "message",
                                                                                 lambda: e)()))

    def infer(self, model, inputs, outputs=None, version=None):
        from tritonclient.utils import InferenceServerException

        ins = []
        for n, dt, a in inputs:
            i = self.mod.InferInput(n, list(a.shape), dt)
            i.set_data_from_numpy(_to_client_array(dt, a))
            ins.append(i)
        outs = [self.mod.InferRequestedOutput(o) for o in outputs] if outputs is not None else None
        try:
            r = self.client.infer(model, ins, model_version=str(version or ""), outputs=outs,
                                  client_timeout=60)
        except InferenceServerException as e:
            raise self.error(e) from None
        resp = r.get_response()
        return {o.name: _from_client_array(o.datatype, r.as_numpy(o.name)) for o in resp.outputs}

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------
# Resources of the process (for the leak check after unload)


# Threads of grpc's process-wide pools, by kernel name (as /proc shows it: 15 bytes at most).
# grpc sizes these for the whole process on its own schedule, not per model, so the leak check
# leaves them out. The iomgr timer manager ("grpc_global_timer") starts one more thread each
# time a timer fires while no other of its threads is waiting, and keeps it until grpc shuts
# down: e.g. at the first run of the client-channel backup poller, a 5 s timer grpc starts
# with the first client channel unless its EventEngine client, listener and DNS are all on.
# With GRPC_EXPERIMENTS=-event_engine_listener (faster for --grpc-engine grpcio) the harness's gRPC
# client thus made that pool grow from 1 to 2 threads during the check, when it happened to
# run 5 s after the client connected. EventEngine's work-stealing pool ("event_engine") adds
# threads when busy and retires idle ones. A model's threads, Python or native, still count.
GRPC_POOL_THREADS = frozenset({"grpc_global_tim", "event_engine"})


def _native_threads() -> dict[int, str]:
    """The process's threads by kernel id with their names: /proc where there is one, else
    psutil's thread ids (macOS) with no names."""
    out: dict[int, str] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        import psutil

        try:
            return {t.id: "" for t in psutil.Process().threads()}
        except (psutil.Error, OSError):
            return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
        except (OSError, ValueError):  # the thread ended meanwhile
            pass
    return out


@dataclasses.dataclass
class Resources:
    """A snapshot of what the process holds. Threads are compared by identity, never by
    count: a thread of an earlier test that ends between two snapshots must not hide a new
    one (a count would net them out)."""

    native_threads: dict[int, str]  # OS thread id -> kernel thread name ("" where unknown)
    py_threads: dict[int, str]  # native id -> name, of the threads Python knows
    fds: int
    children: set[int]
    shm: set[str]

    @classmethod
    def now(cls) -> Resources:
        import gc

        import psutil

        gc.collect()
        p = psutil.Process()
        try:
            fds = p.num_fds()
        except AttributeError:  # pragma: no cover - Windows
            fds = len(p.open_files())
        shm: set[str] = set()
        if os.path.isdir("/dev/shm"):
            try:
                shm = set(os.listdir("/dev/shm"))
            except OSError:
                pass
        return cls(native_threads=_native_threads(),
                   py_threads={t.native_id: t.name for t in threading.enumerate()
                               if t.native_id is not None},
                   fds=fds, children={c.pid for c in p.children(recursive=True)}, shm=shm)

    def new_threads(self, base: Resources) -> list[str]:
        """Threads alive now that were not in `base`, as "name#id" (grpc's process-wide pools
        left out). A Python thread is named by Python, a native one by its kernel name."""
        out = []
        for tid, kernel_name in self.native_threads.items():
            if tid in base.native_threads or kernel_name in GRPC_POOL_THREADS:
                continue
            py_name = self.py_threads.get(tid)
            if py_name and kernel_name and not py_name.startswith(kernel_name):
                out.append(f"{py_name} [{kernel_name}]#{tid}")  # renamed by native code
            else:
                out.append(f"{py_name or kernel_name or 'unnamed'}#{tid}")
        for tid, name in self.py_threads.items():  # where the OS lists no threads
            if tid not in self.native_threads and tid not in base.py_threads:
                out.append(f"{name}#{tid}")
        return sorted(out)

    def leaks_since(self, base: Resources) -> list[str]:
        out = []
        new = self.new_threads(base)
        if new:
            out.append(f"{len(new)} more OS thread(s): {', '.join(new)}")
        if self.fds > base.fds:
            out.append(f"{self.fds - base.fds} more open file descriptor(s)")
        if self.children - base.children:
            out.append(f"child processes still running: {sorted(self.children - base.children)}")
        if self.shm - base.shm:
            out.append(f"shared-memory objects left in /dev/shm: {sorted(self.shm - base.shm)}")
        return out


# ---------------------------------------------------------------------------
# The session


class Skip(Exception):
    """Everything that needs the backend is skipped, with this reason."""


def set_instance_kind(config: Path, kind: str) -> None:
    """Make every instance group of a reference config ``kind`` (one group of one instance
    where it names none): ``--instance-kind``."""
    text = config.read_text()
    if "instance_group" in text:
        text = re.sub(r"kind:\s*KIND_(CPU|AUTO|GPU|MODEL)", f"kind: {kind}", text)
    else:
        text += f"instance_group [{{ kind: {kind} count: 1 }}]\n"
    config.write_text(text)


class Harness:
    """Built once per test session for one backend."""

    def __init__(self, backend: str, workdir: Path, instance_kind: str | None = None) -> None:
        self.backend = backend
        self.instance_kind = instance_kind  # KIND_GPU: every model's instances on the GPUs
        self.workdir = workdir
        self.repo = workdir / "models"
        self.scratch = workdir / "scratch"
        self.repo.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._saved_env = os.environ.pop(ENV_DISABLE_AUTOLOAD, None)
        self.registry = BackendRegistry()
        self.registry.discover()
        self.entry: BackendEntry | None = resolved(self.registry.entry(backend))
        self.failed_entries = [e for e in self.registry.entries
                               if e.name == backend and e.status == "failed"]
        self.spec: ConformanceSpec | None = None
        self.spec_error = ""
        self.roles: dict[str, ModelRole] = {}
        self.build_error = ""
        self.load_errors: dict[str, str] = {}
        self.server: Server | None = None
        self.probe = Probe()
        self.front: FrontEnds | None = None
        self._clients: dict[str, Client] = {}
        self.skip_reason = ""
        self._setup()

    # setup ------------------------------------------------------------------
    def _setup(self) -> None:
        if self.entry is None:
            known = ", ".join(sorted(e.name for e in self.registry.entries)) or "none"
            why = "; ".join(f"{e.plugin}: {e.reason}" for e in self.failed_entries)
            self.skip_reason = (f"backend '{self.backend}' is not installed or failed to register "
                                f"({why or 'no entry point provides it'}; registered: {known})")
            return
        if self.entry.status != "available":
            self.skip_reason = f"backend '{self.backend}' is {self.entry.status}: {self.entry.reason}"
            return
        try:
            self.spec = self.registry.pm.hook.triton_conformance(backend_name=self.backend)
        except Exception as e:  # noqa: BLE001 - reported by the registration tests
            self.spec_error = f"triton_conformance() raised {type(e).__name__}: {e}"
        if self.spec is None:
            self.spec_error = self.spec_error or (
                f"no plugin answers the triton_conformance hook for '{self.backend}' "
                "(see docs/conformance.md: the backend must declare its capabilities and models)")
            self.skip_reason = self.spec_error
            return
        if not isinstance(self.spec, ConformanceSpec):
            self.spec_error = f"triton_conformance() returned {type(self.spec).__name__}, not ConformanceSpec"
            self.skip_reason = self.spec_error
            self.spec = None
            return
        reason = self.spec.capabilities.platform_reason()
        if reason:
            self.skip_reason = reason
            return
        try:
            self.roles = dict(self.spec.build_models(self.repo))
        except ImportError as e:  # a tool the models are written with (onnx, say) is missing
            package = (e.name or "").split(".")[0]
            self.build_error = (f"install {package or 'what build_models() imports'} to build the "
                                f"conformance models (build_models() raised {type(e).__name__}: {e})")
            self.skip_reason = self.build_error
            return
        except Exception as e:  # noqa: BLE001
            self.build_error = f"build_models() raised {type(e).__name__}: {e}"
            self.skip_reason = self.build_error
            return
        if self.instance_kind is not None:
            reason = self._instance_kind_reason()
            if reason:
                self.skip_reason = reason
                return
            for name in self.roles:
                set_instance_kind(self.repo / name / "config.pbtxt", self.instance_kind)
        self.server = Server(model_repository=[self.repo], model_control_mode="explicit",
                             allow_client_shm=True, exit_on_error=False, exit_timeout_secs=10)
        self.server.start()
        entry = self.server.registry.entry(self.backend)
        if entry is None or entry.spec is None:
            self.skip_reason = f"the server did not register backend '{self.backend}'"
            return
        entry.spec = dataclasses.replace(entry.spec, factory=self.probe.wrap_factory(entry.spec.factory))
        self.load_errors = self.server.manager.load_many(sorted(self.roles))

    def _instance_kind_reason(self) -> str:
        """Why the models cannot run as ``instance_kind`` here ('' when they can)."""
        assert self.spec is not None
        if not self.spec.capabilities.gpu:
            return (f"--instance-kind {self.instance_kind}: backend '{self.backend}' does not "
                    "declare the gpu capability")
        why = self.spec.gpu_available() if self.spec.gpu_available is not None else None
        return f"--instance-kind {self.instance_kind}: no GPU usable here: {why}" if why else ""

    # queries -----------------------------------------------------------------
    @property
    def caps(self):
        assert self.spec is not None
        return self.spec.capabilities

    def model_for(self, role: str, datatype: str = "") -> str:
        """The model of ``role``; skips the test when the backend does not claim the role."""
        claimed = {IDENTITY: self.caps.identity, ADD_SUB: self.caps.add_sub}.get(role, True)
        if not claimed:
            note = self.caps.notes.get(role, "")
            pytest.skip(f"backend '{self.backend}' does not declare '{role}' (it cannot serve the "
                        f"suite's {role} model)" + (f": {note}" if note else ""))
        for name, r in self.roles.items():
            if r.role == role and (not datatype or r.datatype == datatype):
                return name
        raise LookupError(f"the backend built no '{role}' model" + (f" for {datatype}" if datatype else ""))

    def ready_model(self, role: str, datatype: str = "") -> str:
        name = self.model_for(role, datatype)
        if name in self.load_errors:
            raise AssertionError(f"conformance model '{name}' failed to load: {self.load_errors[name]}")
        return name

    def client(self, protocol: str) -> Client:
        c = self._clients.get(protocol)
        if c is not None:
            return c
        assert self.server is not None
        if protocol == "inproc":
            c = InProcessClient(self.server)
        elif protocol == "http":
            c = HttpClient(self.frontends().http_url())
        elif protocol == "grpc":
            c = GrpcClient(self.frontends().grpc_url())
        else:
            raise ValueError(protocol)
        self._clients[protocol] = c
        return c

    def frontends(self) -> FrontEnds:
        if self.front is None:
            assert self.server is not None
            self.front = FrontEnds(self.server)
        return self.front

    def copy_model(self, source: str, name: str) -> Path:
        """A copy of a built model under a new name (for lifecycle tests)."""
        dst = self.repo / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(self.repo / source, dst)
        return dst

    def close(self) -> None:
        for c in self._clients.values():
            close = getattr(c, "close", None)
            if close:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
        if self.front is not None:
            self.front.close()
        if self.server is not None:
            self.server.stop()
        if self._saved_env is not None:
            os.environ[ENV_DISABLE_AUTOLOAD] = self._saved_env
