"""The backend ABI: pluggy hookspecs and the Backend / Model / Instance contract.

A plugin registers through the entry-point group ``triton_core``; the module
named there implements one or more hooks below with ``@triton_core.hookimpl``.
Pluggy is used for discovery and cross-cutting concerns only: inference calls
``Instance.execute`` directly, never through a hook.

Lifecycle (mirrors TRITONBACKEND): one ``Backend`` per process, created on the
first model that needs it; one ``Model`` per loaded model version; one
``Instance`` per instance-group entry (count). ``execute`` runs on the instance's own
thread and is never called concurrently on one instance (an instance with
``begin_execute`` may have that called from the server's event loop instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from .config import ModelConfig
from .request import InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from .conformance_spec import ConformanceSpec

PROJECT = "triton_core"
ENTRY_POINT_GROUP = "triton_core"

# The core's ABI version. A backend built for (M, m) loads when M equals
# ABI_VERSION[0] and m <= ABI_VERSION[1] (Triton's rule).
ABI_VERSION: tuple[int, int] = (1, 5)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def server_saturated() -> bool:
    """ABI 1.3, kept for backends that call it: always False. The core no longer measures
    its event loop's load; a backend that spins waiting for work decides on its own."""
    return False


def abi_compatible(abi: tuple[int, int]) -> bool:
    return abi[0] == ABI_VERSION[0] and abi[1] <= ABI_VERSION[1]


@dataclass(frozen=True)
class BackendSpec:
    """What a plugin says about one backend it provides."""

    name: str
    """The config.pbtxt ``backend:`` value (e.g. "onnxruntime", "python")."""
    factory: Callable[[BackendContext], Backend]
    """Creates the process-wide Backend object."""
    platforms: tuple[str, ...] = ()
    """config.pbtxt ``platform:`` values this backend serves (e.g. "onnxruntime_onnx")."""
    default_model_filename: str = ""
    """File or folder in a version directory that identifies this backend's models."""
    abi: tuple[int, int] = ABI_VERSION
    available: Callable[[], str | None] | None = None
    """Returns None when the backend can run here, else the reason it cannot."""
    description: str = ""
    gpu: bool = False
    """ABI 1.4: KIND_GPU instances run on their GPU here (e.g. onnxruntime with its CUDA
    provider). Only then does KIND_AUTO become KIND_GPU on a machine with GPUs; an explicit
    KIND_GPU group is created either way (the backend decides what it means)."""
    device_tensors: bool = False
    """ABI 1.5: the backend's KIND_GPU instances take inputs that lie in GPU memory (a CUDA
    shared-memory region) as they are: ``Tensor.device_array()`` is then a ``CudaArray``
    (``__cuda_array_interface__``) on the region's GPU. Every other instance gets its
    inputs in host memory, copied by the core before ``execute``."""


@dataclass
class BackendContext:
    """Given to a backend's factory."""

    name: str
    config: dict[str, str] = field(default_factory=dict)
    """``--backend-config=<name>,<key>=<value>`` settings."""


class ServerHandle(Protocol):
    """What a backend may ask of the server that loaded it: business-logic scripting
    (BLS) requests and model control. The in-process ``triton_core.Server`` implements it;
    backends depend on this, never on the server's module."""

    def infer_iter(self, req: InferenceRequest, timeout: float | None = None
                   ) -> Iterator[tuple[InferenceResponse | None, bool]]:
        """Every response of a request, with whether it is the final one (blocking)."""
        ...

    def model_ready(self, name: str, version: str | int | None = None) -> bool: ...

    def load_model(self, name: str, config: str | dict | None = None,
                   files: dict[str, str] | None = None) -> None: ...

    def unload_model(self, name: str, unload_dependents: bool = False) -> None: ...


@dataclass
class ModelContext:
    """Everything a backend knows about the model version it loads."""

    name: str
    version: int
    model_path: Path
    """The model's folder (``<repo>/<model>``)."""
    config: ModelConfig
    """The config as read (possibly empty when the repository has none)."""
    auto_complete: bool = True
    """False under --disable-auto-complete-config: the backend must not change the config."""
    server: ServerHandle | None = None
    """The server, for BLS and model control (None where a model is loaded without one)."""

    @property
    def version_path(self) -> Path:
        return self.model_path / str(self.version)

    @property
    def model_file(self) -> Path:
        """The version's model file: default_model_filename, else the backend's default."""
        return self.version_path / (self.config.default_model_filename or "")


@dataclass
class InstanceContext:
    """One instance of a model version."""

    name: str
    """``<group name>_<index>``, as Triton names instances."""
    kind: str
    """KIND_CPU, KIND_GPU or KIND_MODEL (KIND_AUTO is resolved by the core)."""
    device_id: int = 0
    """KIND_GPU: the GPU's CUDA ordinal (as Triton's TRITONBACKEND_ModelInstanceDeviceId);
    several instances of one group share a name, one per GPU. 0 for other kinds."""


class ExecuteTimer:
    """Timestamps a backend reports for statistics (TRITONBACKEND's compute start/end).

    A backend that never marks them has its whole execute counted as infer time.
    """

    __slots__ = ("exec_start_ns", "compute_start_ns", "compute_end_ns", "exec_end_ns")

    def __init__(self) -> None:
        self.exec_start_ns = time.monotonic_ns()
        self.compute_start_ns = 0
        self.compute_end_ns = 0
        self.exec_end_ns = 0

    def compute_start(self) -> None:
        self.compute_start_ns = time.monotonic_ns()

    def compute_end(self) -> None:
        self.compute_end_ns = time.monotonic_ns()


class PendingExecute(Protocol):
    """A started execute (see Instance.begin_execute)."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True once ``result()`` will not block."""

    def result(self) -> list[InferenceResponse]:
        """The responses, one per request (blocks until they are there)."""

    # Optional (ABI 1.2): ``def fileno(self) -> int | None``, a descriptor that turns
    # readable when ``wait(0)`` may turn True. The core watches it on its event loop
    # (see Instance.begin_execute); without it a thread waits for each result. ``wait(0)``
    # must stay False when the descriptor is readable for another reason (the peer
    # closed it): a thread then calls ``result()``, which may block.


class Backend:
    """Process-wide state of one backend (TRITONBACKEND_Initialize / _Finalize)."""

    def load_model(self, ctx: ModelContext) -> Model:
        """Load one model version; may auto-complete the config (see Model.config)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release process-wide resources (server shutdown)."""


class Model:
    """One loaded model version (TRITONBACKEND_ModelInitialize / _ModelFinalize)."""

    config: ModelConfig
    """The final config, auto-completed by the backend where it may."""

    def create_instance(self, ctx: InstanceContext) -> Instance:
        """Create one instance (owns its runtime session)."""
        raise NotImplementedError

    def close(self) -> None:
        """Called after every instance is closed."""


class Instance:
    """One model instance (TRITONBACKEND_ModelInstanceExecute)."""

    inline_execute: bool = False
    """ABI 1.0-1.3, accepted and no longer used: every ``execute`` runs on the instance's
    own thread (measured: running small requests on the event loop saved nothing)."""

    def execute(
        self, requests: Sequence[InferenceRequest], timer: ExecuteTimer
    ) -> list[InferenceResponse]:
        """Run a batch of requests; one response per request, in order.

        Decoupled models (model_transaction_policy { decoupled: true }) return
        None instead and send through ``request.response_sender().send(resp,
        flags)``, from execute or from threads they start; each request ends
        with a send carrying RESPONSE_COMPLETE_FINAL.

        The core has already checked every request against the config (names,
        datatypes, shapes, batch size). A failure specific to one request goes
        in that response's ``error``; an exception fails every request of the call.
        """
        raise NotImplementedError

    def begin_execute(self, requests: Sequence[InferenceRequest], timer: ExecuteTimer
                      ) -> PendingExecute:
        """Optional (ABI 1.1): start ``execute`` and return without waiting for its result.

        For instances whose execute mostly waits on another process (the python
        backend's worker): the core's loop driver (scheduling/loop_driver.py) then sends
        requests from its event loop and takes each result when the PendingExecute's
        descriptor turns readable (docs/abi.md). Same contract as ``execute`` otherwise
        (never concurrent with it on one instance; exceptions from this method or from
        ``result()`` fail the batch). Not used for decoupled models or with a dynamic or
        sequence batcher: those run through ``execute`` on the instance's thread.
        """
        raise NotImplementedError

    pipeline_depth: int = 1
    """With begin_execute: how many started executes may await their results at once
    (results are always taken in the order they were started). The python backend says 2:
    its worker reads requests in order, so the next one waits there, ready, while the
    current one runs."""

    def is_ready(self) -> bool:
        """Whether this instance can serve now (optional; e.g. False while a worker
        process restarts). The core reports the model not ready while any instance is not."""
        return True

    def close(self) -> None:
        """Release the instance's runtime session."""


class HookSpecs:
    """The hooks a plugin may implement."""

    @hookspec
    def triton_backends(self) -> Iterable[BackendSpec]:  # type: ignore[empty-body]
        """Return (or yield) the BackendSpecs this plugin provides."""

    @hookspec(firstresult=True)
    def triton_conformance(self, backend_name: str) -> ConformanceSpec | None:
        """Optional: the ConformanceSpec of ``backend_name`` if this plugin provides that
        backend, else None. Used only by the conformance suite (``triton conformance``),
        never by the server: declare capabilities and build the conformance models
        (see triton_core.conformance_spec)."""

    @hookspec
    def triton_metric_families(self, registry: Any) -> None:
        """Add the plugin's own Prometheus metric families to ``registry``
        (a prometheus_client CollectorRegistry served on the metrics port)."""

    @hookspec
    def triton_server_started(self, server: ServerHandle) -> None:
        """Called once the server has loaded its models and is serving."""

    @hookspec
    def triton_server_stopping(self, server: ServerHandle) -> None:
        """Called before the server unloads its models at shutdown."""
