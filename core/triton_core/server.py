"""The in-process Server: the one composition root the CLI and front ends talk to."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .config import ModelConfig, config_to_json_dict
from .conversion import lossless_array
from .errors import TritonError
from .logsettings import LogSettings
from .memory.cuda_shm import CudaSharedMemoryRegistry
from .memory.io import SharedMemoryIO
from .memory.registry import SystemSharedMemoryRegistry
from .model_version import model_version
from .models.manager import MAX_NAME_BYTES, ModelManager
from .models.registry import BackendRegistry
from .models.repository import Repository
from .options import ServerOptions
from .request import RESPONSE_COMPLETE_FINAL, InferenceRequest, InferenceResponse, RequestedOutput
from .scheduling.cache import ResponseCache, parse_cache_config
from .scheduling.clock import MONOTONIC, Clock
from .scheduling.engine_loop import EngineLoop
from .scheduling.metrics_config import MetricsConfig
from .scheduling.policy import DEFAULT_POLICY, DriverPolicy
from .scheduling.rate_limiter import RateLimiter
from .scheduling.servable import Servable
from .scheduling.trace import parse_trace_flags
from .scheduling.validate import normalize_request
from .tensor import Tensor

if TYPE_CHECKING:
    from .peers import Peers

log = logging.getLogger("triton_core")

EXTENSIONS = [
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "logging",
    "trace",
]


def parse_version(version: str | int | None) -> int | None:
    """A version from a URL or message: '' / None / -1 mean the newest ready one (Triton's
    words for anything else that is not a version: model_version.py)."""
    return model_version(None if version is None else str(version))


class ModelHandle:
    """`server.model(name).infer({...})` for notebooks: numpy in, numpy out."""

    def __init__(self, server: Server, name: str, version: int | None) -> None:
        self.server = server
        self.name = name
        self.version = version

    @property
    def config(self) -> ModelConfig:
        return self.server.manager.get(self.name, self.version).config

    def infer(self, inputs: Mapping[str, Any], outputs: list[str] | None = None,
              parameters: dict | None = None) -> dict[str, np.ndarray]:
        cfg = self.config
        tensors = {}
        for n, v in inputs.items():
            ic = cfg.input_by_name(n)
            dt = ic.datatype if ic is not None else None
            if dt is not None and dt.value == "BYTES":
                arr = np.asarray(v, dtype=object)
            elif dt is not None and dt.value != "BF16":
                try:  # the HTTP front end's rules: no silent narrowing or rounding
                    arr = lossless_array(dt, v)
                except ValueError as e:
                    raise TritonError.invalid_arg(
                        f"unable to parse input '{n}' of model '{self.name}': {e}") from None
            else:
                arr = np.asarray(v)
            tensors[n] = Tensor.from_numpy(n, arr, dt)
        req = InferenceRequest(
            model_name=self.name, model_version=self.version, inputs=tensors,
            outputs=[RequestedOutput(o) for o in outputs] if outputs else None,
            parameters=dict(parameters or {}),
        )
        resp = self.server.infer(req)
        return {t.name: t.as_numpy() for t in resp.outputs}



def _fd_headroom(regions: int) -> None:
    """Raise the soft fd limit so ``regions`` registered regions (one fd each) leave room for sockets."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    want = regions + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            log.warning("cannot raise the open-file limit to %d for %d shared-memory regions",
                        new, regions)

class Server:
    """Triton's server in-process: start / stop, models, inference."""

    def __init__(self, options: ServerOptions | None = None, *, clock: Clock = MONOTONIC,
                 policy: DriverPolicy = DEFAULT_POLICY, **kwargs: Any) -> None:
        """``clock``: the schedulers' time (queue delays, request timeouts, sequence idle
        times); tests pass a scheduling.clock.ManualClock to move it by hand. ``policy``:
        the drivers' tuning (scheduling/policy.py)."""
        self.options = options or ServerOptions(**kwargs)
        self.policy = policy
        # The front ends attach their loop here: process-backed instances are driven on it.
        self.engine_loop = EngineLoop()
        self.metrics_config = MetricsConfig.parse(self.options.metrics_config)
        self.traces = parse_trace_flags(self.options.trace_config).manager()
        limiter = RateLimiter(self.options.rate_limit, self.options.rate_limit_resource)
        self.rate_limiter: RateLimiter | None = limiter if limiter.enabled else None
        self.registry = BackendRegistry(self.options.backend_config)
        self.repository = Repository(self.options.model_repository, self.options.model_config_name)
        cache_size = parse_cache_config(self.options.cache_config)
        self.response_cache: ResponseCache | None = (
            ResponseCache(cache_size) if cache_size is not None else None)
        self.manager = ModelManager(
            self.repository, self.registry,
            auto_complete=not self.options.disable_auto_complete_config,
            load_threads=self.options.model_load_thread_count,
            exit_timeout=self.options.exit_timeout_secs, server=self,
            response_cache=self.response_cache, clock=clock, policy=policy,
            engine=self.engine_loop, rate_limiter=self.rate_limiter,
            summary_quantiles=self.metrics_config.summary_quantiles
            if self.metrics_config.summary_latencies else None,
            first_response_histogram=self.metrics_config.histogram_latencies,
            min_compute_capability=self.options.min_supported_compute_capability,
        )
        self.log_settings = LogSettings()
        # --frontend-processes N > 1: the other processes, whose counts and settings
        # statistics() and the settings updates include (peers.py); None in one process
        self.peers: Peers | None = None
        self.live = False
        self.load_errors: dict[str, str] = {}
        self._poll_stop = threading.Event()
        self._poll_thread: threading.Thread | None = None
        # monotonic time by which shutdown must be done (set by begin_stop)
        self.stop_deadline: float | None = None
        # Client shared memory is off unless asked for, as in Triton.
        self.shm_registry: SystemSharedMemoryRegistry | None = None
        self.cuda_shm_registry: CudaSharedMemoryRegistry | None = None
        self.shm_io: SharedMemoryIO | None = None
        if self.options.allow_client_shm:
            self.shm_registry = SystemSharedMemoryRegistry(
                max_regions=self.options.shm_max_regions)
            self.cuda_shm_registry = CudaSharedMemoryRegistry(
                self.manager.gpus, taken=self.shm_registry.__contains__,
                max_regions=self.options.shm_max_regions)
            self.shm_io = SharedMemoryIO(self.shm_registry, self.cuda_shm_registry)
            _fd_headroom(self.options.shm_max_regions)

    # lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.registry.discover()
        if not self.options.model_repository:
            raise TritonError.invalid_arg("at least one --model-repository is required")
        self.repository.check_roots()
        mode = self.options.model_control_mode
        if mode == "explicit":
            wanted = self.options.load_model
            if "*" in wanted:
                wanted = sorted(self.repository.scan().models)
        else:
            if self.options.load_model:
                raise TritonError.invalid_arg(
                    "--load-model is only allowed with --model-control-mode=explicit")
            scan = self.repository.scan()
            for n, msg in scan.errors.items():
                self.load_errors[n] = msg
                rec = self.manager.record(n)
                rec.error = msg
            wanted = sorted(scan.models)
        self.load_errors.update(self.manager.load_many(list(wanted)))
        for n, msg in self.load_errors.items():
            log.error("failed to load '%s': %s", n, msg)
        if self.load_errors and self.options.exit_on_error:
            self.stop()
            raise TritonError.invalid_arg(
                "failed to load all models: " + "; ".join(
                    f"{n}: {m}" for n, m in sorted(self.load_errors.items())))
        if mode == "poll":
            self._poll_thread = threading.Thread(target=self._poll_loop, name="triton-poll",
                                                 daemon=True)
            self._poll_thread.start()
        self.live = True
        self.registry.pm.hook.triton_server_started(server=self)

    def _poll_loop(self) -> None:
        while not self._poll_stop.wait(self.options.repository_poll_secs):
            try:
                self.manager.poll_once()
            except Exception:  # polling must survive a bad repository state
                log.exception("repository poll failed")

    def begin_stop(self, exit_process: bool = False) -> float:
        """Shutdown begins (a signal): loads in progress give up and every wait from here
        on shares one deadline, --exit-timeout-secs from now; returns it.

        ``exit_process``: a watchdog ends the process (after killing what backends
        started) should shutdown still run a grace period past the deadline.
        """
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.options.exit_timeout_secs
            self.manager.stopping.set()
            if exit_process:
                threading.Thread(target=self._watchdog, name="triton-exit-watchdog",
                                 daemon=True).start()
        return self.stop_deadline

    def stop_time_left(self) -> float:
        """Seconds left before the shutdown deadline (the exit timeout if not begun)."""
        if self.stop_deadline is None:
            return self.options.exit_timeout_secs
        return max(0.0, self.stop_deadline - time.monotonic())

    def _watchdog(self) -> None:
        assert self.stop_deadline is not None
        time.sleep(max(0.0, self.stop_deadline - time.monotonic()) + _EXIT_GRACE_S)
        log.error("shutdown did not finish within --exit-timeout-secs=%g (+%g s); exiting now",
                  self.options.exit_timeout_secs, _EXIT_GRACE_S)
        try:
            self.registry.close()  # backends kill their worker processes
        finally:
            logging.shutdown()
            os._exit(1)

    def stop(self) -> None:
        """Stop serving; unloading waits for in-flight requests until the shutdown deadline
        (begin_stop's, or --exit-timeout-secs from now)."""
        if self.live:
            self.registry.pm.hook.triton_server_stopping(server=self)
        self.live = False
        self._poll_stop.set()
        left = self.stop_time_left()
        if self._poll_thread is not None:
            self._poll_thread.join(timeout=min(5, left))
        self.manager.close(self.stop_time_left())
        self.traces.flush()
        self.repository.close()
        self.engine_loop.close()
        self.registry.close()
        if self.shm_registry is not None:  # this process's: the other front ends keep theirs
            self.shm_registry.unregister_all(everywhere=False)
        if self.cuda_shm_registry is not None:
            self.cuda_shm_registry.unregister_all()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # health and metadata ---------------------------------------------------------
    def is_live(self) -> bool:
        return self.live

    def is_ready(self) -> bool:
        if not self.live:
            return False
        if self.options.strict_readiness:
            return self.manager.all_ready()
        return True

    def metadata(self) -> dict[str, Any]:
        return {"name": self.options.server_id, "version": __version__,
                "extensions": self.extensions()}

    def trace_setting(self, model: str | None = None) -> dict[str, Any]:
        """The trace settings in force (a model's, or the global ones), Triton's shape."""
        if model is not None:
            self.manager.get(model)  # an unknown model is an error
        return {**self.traces.setting(model).as_response(), "trace_mode": self.traces.mode}

    def update_trace_setting(self, model: str | None, changes: dict[str, Any]) -> dict[str, Any]:
        if self.peers is not None and changes.get("trace_file") not in (None, "", []):
            raise TritonError.unsupported(
                "trace_file cannot be set with --frontend-processes > 1: the processes would "
                "write one file over each other")
        out = self.update_trace_setting_here(model, changes)
        if self.peers is not None:  # the same settings in every front-end process
            self.peers.ask_others("trace_setting", model=model, changes=changes)
        return out

    def update_trace_setting_here(self, model: str | None, changes: dict[str, Any]) -> dict[str, Any]:
        """update_trace_setting in this process only."""
        if model is not None:
            self.manager.get(model)
        changes = dict(changes)
        mode = changes.pop("trace_mode", None)
        if mode not in (None, self.traces.mode, [self.traces.mode]):
            raise TritonError.invalid_arg(
                f"trace_mode {mode}: the trace mode is set at start-up ({self.traces.mode})")
        self.traces.update(model, changes)
        return self.trace_setting(model)

    def extensions(self) -> list[str]:
        ext = list(EXTENSIONS)
        if self.shm_registry is not None:
            ext.insert(5, "system_shared_memory")
        cuda = self.cuda_shm_registry
        # not offered where every registration would be refused (--frontend-processes N > 1)
        if cuda is not None and cuda.refused is None and cuda.gpus.devices():
            ext.insert(6, "cuda_shared_memory")
        return ext

    def model(self, name: str, version: int | None = None) -> ModelHandle:
        self.manager.get(name, version)  # fail now for an unknown model
        return ModelHandle(self, name, version)

    def _version(self, name: str, version: str | int | None) -> Servable:
        return self.manager.get(name, parse_version(version))

    def model_ready(self, name: str, version: str | int | None = None) -> bool:
        return self.manager.is_ready(name, parse_version(version))

    def model_config(self, name: str, version: str | int | None = None) -> ModelConfig:
        return self._version(name, version).config

    def model_config_json(self, name: str, version: str | int | None = None) -> dict[str, Any]:
        return config_to_json_dict(self.model_config(name, version))

    def model_metadata(self, name: str, version: str | int | None = None) -> dict[str, Any]:
        lv = self._version(name, version)
        cfg = lv.config
        versions = sorted(str(v) for v in self.manager.ready_versions(name))
        batch = [-1] if cfg.max_batch_size > 0 else []

        def meta(ts: list) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype.value, "shape": batch + list(t.dims)}
                    for t in ts]

        return {"name": name, "versions": versions, "platform": cfg.platform or cfg.backend,
                "inputs": meta(cfg.input), "outputs": meta(cfg.output)}

    # inference -------------------------------------------------------------------
    def _prepare(self, req: InferenceRequest) -> tuple[Servable, int]:
        if not self.live:
            raise TritonError.unavailable("Server is not live")
        lv = self.manager.get(req.model_name, req.model_version)
        for key in req.parameters:
            if key.startswith("triton_"):
                raise TritonError.invalid_arg(
                    f"parameter keys starting with 'triton_' are reserved for Triton usage: '{key}'")
        batch = normalize_request(req, lv.config)
        trace = req.trace
        if trace is None:
            trace = req.trace = self.traces.sample(lv.name, lv.version, req.id, req.traceparent,
                                                   req.arrival_ns)
        else:  # a child's trace made by its caller (a BLS request): the version served
            trace.model_version = lv.version
        if trace is not None and trace.tensors is not None:
            for t in req.inputs.values():
                trace.tensor("TENSOR_QUEUE_INPUT", t.name, t.datatype.value, t.shape,
                             t.as_numpy())
        return lv, batch

    async def infer_async(self, req: InferenceRequest,
                          decoupled_error: str | None = None) -> InferenceResponse:
        """Run one request of a non-decoupled model; raises TritonError on failure.

        ``decoupled_error``: the message for a decoupled model (front ends pass Triton's).
        """
        lv, batch = self._prepare(req)
        if lv.decoupled:
            raise TritonError.unsupported(decoupled_error or (
                f"model '{lv.name}' is decoupled: use a streaming API (gRPC ModelStreamInfer)"))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[InferenceResponse] = loop.create_future()
        loop_thread = threading.get_ident()

        def done(resp: InferenceResponse | None, flags: int) -> None:
            if threading.get_ident() == loop_thread:  # a loop driver answers on this loop
                _resolve(fut, resp)
            else:
                loop.call_soon_threadsafe(_resolve, fut, resp)

        req.callback = done
        lv.submit(req, batch)
        try:
            resp = await fut
        except asyncio.CancelledError:
            lv.cancel(req)  # a queued request leaves the queue now, failed as CANCELLED
            raise
        if resp.error is not None:
            raise resp.error
        return resp

    async def infer_stream(
        self, req: InferenceRequest
    ) -> AsyncIterator[tuple[InferenceResponse | None, bool]]:
        """Every response of a request as (response or None, final); any model kind.

        Errors of a started request arrive as responses with ``error`` set;
        a request refused up front raises TritonError.
        """
        lv, batch = self._prepare(req)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[InferenceResponse | None, int]] = asyncio.Queue()

        def on_response(resp: InferenceResponse | None, flags: int) -> None:
            loop.call_soon_threadsafe(q.put_nowait, (resp, flags))

        req.callback = on_response
        lv.submit(req, batch)
        try:
            while True:
                resp, flags = await q.get()
                final = bool(flags & RESPONSE_COMPLETE_FINAL)
                yield resp, final
                if final:
                    return
        except (asyncio.CancelledError, GeneratorExit):
            lv.cancel(req)
            raise

    def infer(self, req: InferenceRequest, timeout: float | None = None) -> InferenceResponse:
        """Blocking inference of a non-decoupled model, for code without an event loop."""
        lv, batch = self._prepare(req)
        if lv.decoupled:
            raise TritonError.unsupported(
                f"model '{lv.name}' is decoupled: use infer_iter()")
        fut: concurrent.futures.Future[InferenceResponse] = concurrent.futures.Future()
        req.callback = lambda resp, flags: fut.set_result(resp)  # type: ignore[arg-type]
        lv.submit(req, batch)
        try:
            resp = fut.result(timeout)
        except concurrent.futures.TimeoutError:
            lv.cancel(req)  # as infer_iter: the request does not run on after we gave up
            raise TritonError.unavailable("timed out waiting for a response") from None
        if resp.error is not None:
            raise resp.error
        return resp

    def infer_iter(self, req: InferenceRequest,
                   timeout: float | None = None) -> Iterator[tuple[InferenceResponse | None, bool]]:
        """Blocking iteration over every response of a request (decoupled or not)."""
        lv, batch = self._prepare(req)
        q: queue.Queue[tuple[InferenceResponse | None, int]] = queue.Queue()
        req.callback = lambda resp, flags: q.put((resp, flags))
        lv.submit(req, batch)
        while True:
            try:
                resp, flags = q.get(timeout=timeout)
            except queue.Empty:
                lv.cancel(req)
                raise TritonError.unavailable("timed out waiting for a response") from None
            final = bool(flags & RESPONSE_COMPLETE_FINAL)
            yield resp, final
            if final:
                return

    # statistics, repository, logging ----------------------------------------------
    def statistics(self, name: str | None = None, version: str | int | None = None) -> dict:
        """Triton's statistics; summed over every front-end process (peers.py)."""
        here = self.statistics_here(name, version)
        if self.peers is None:
            return here
        from .peers import merge_model_stats

        return merge_model_stats([here, *self.peers.ask_others(
            "statistics", name=name, version=version)])

    def statistics_here(self, name: str | None = None, version: str | int | None = None) -> dict:
        """The statistics this process counted."""
        out = []
        if name:
            v = parse_version(version)
            loaded = self.manager.loaded_versions(name)
            if not loaded:
                raise TritonError.not_found(f"requested model '{name}' is not available")
            if v is not None:
                lv = self.manager.get(name, v)
                out.append(lv.stats.as_dict(name, lv.version))
            else:
                out.extend(lv.stats.as_dict(name, ver) for _, ver, lv in loaded)
        else:
            out.extend(lv.stats.as_dict(n, ver) for n, ver, lv in self.manager.loaded_versions())
        return {"model_stats": out}

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return self.manager.index(ready_only)

    def _check_model_control(self) -> None:
        if self.options.model_control_mode == "none":
            # Triton's words for both modes (clients match on them), then what applies here
            raise TritonError.unavailable(
                "explicit model load / unload is not allowed if polling is enabled (the model "
                "control mode is NONE: start the server with --model-control-mode=explicit)")
        if self.options.model_control_mode == "poll":
            raise TritonError.unavailable(
                "explicit model load / unload is not allowed if polling is enabled")

    def load_model(self, name: str, config: str | dict | None = None,
                   files: dict[str, str] | None = None) -> None:
        self._check_model_control()
        if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise TritonError.invalid_arg(f"invalid model name '{name}'")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:  # a folder name the OS takes
            raise TritonError.invalid_arg(
                f"invalid model name '{name[:64]}...': longer than {MAX_NAME_BYTES} bytes")
        self.manager.load(name, config, files)

    def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._check_model_control()
        dependents = self.manager.dependents(name) if unload_dependents else []
        self.manager.unload(name)
        for dep in dependents:
            try:
                self.manager.unload(dep)
            except TritonError as e:
                log.warning("unloading dependent '%s' of '%s' failed: %s", dep, name, e.message)


# How long past the exit deadline the process may take before the watchdog ends it.
_EXIT_GRACE_S = 5.0

def _resolve(fut: asyncio.Future, resp: InferenceResponse) -> None:
    if not fut.done():
        fut.set_result(resp)
