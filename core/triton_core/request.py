"""Protocol-neutral inference request and response."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorCode, TritonError
from .tensor import Tensor

# TRITONSERVER request / response flags.
REQUEST_FLAG_SEQUENCE_START = 1
REQUEST_FLAG_SEQUENCE_END = 2
RESPONSE_COMPLETE_FINAL = 1

# callback(response or None, flags): every response of a request, the last with FINAL.
# It may run on any thread (an instance thread, the event loop on a cache hit, a backend's
# reader thread), so it must not block and must not re-enter scheduling synchronously
# (wait for a slot, a lock held by a scheduler): queue the work instead.
ResponseCallback = Callable[["InferenceResponse | None", int], None]


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    # Set by the core at acceptance: the lease on the shared-memory region this
    # output is written to (memory.io.SharedMemoryIO.bind_outputs).
    shm: Any = field(default=None, compare=False, repr=False)

    @property
    def classification(self) -> int:
        return int(self.parameters.get("classification", 0) or 0)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: int | None = None  # None / -1 = the policy's newest ready version
    id: str = ""
    inputs: dict[str, Tensor] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None = every output
    parameters: dict[str, Any] = field(default_factory=dict)
    correlation_id: int | str = 0
    flags: int = 0
    priority: int = 0
    timeout_us: int = 0
    arrival_ns: int = field(default_factory=time.monotonic_ns)
    # Set by the core: receives each response (on any thread: see ResponseCallback); the
    # last has FINAL.
    callback: ResponseCallback | None = None
    cancelled: bool = False
    sender: ResponseSender | None = None  # decoupled models only
    trace: Any = None  # set by the core when this request is traced (scheduling/trace.py)
    responded: bool = False  # a first response went out (histogram_latencies)
    traceparent: str = ""  # the client's W3C trace context header (opentelemetry tracing)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def response_sender(self) -> ResponseSender:
        """The sender of a decoupled model's responses (TRITONBACKEND_ResponseFactory)."""
        if self.sender is None:
            raise TritonError.unsupported(
                f"model '{self.model_name}' is not decoupled: return responses from execute")
        return self.sender

    def requested_output_names(self) -> list[str] | None:
        return None if self.outputs is None else [o.name for o in self.outputs]


@dataclass(slots=True)
class InferenceResponse:
    model_name: str = ""
    model_version: int = 0
    id: str = ""
    outputs: list[Tensor] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    error: TritonError | None = None

    def output(self, name: str) -> Tensor | None:
        for t in self.outputs:
            if t.name == name:
                return t
        return None


class ResponseSender:
    """Sends zero or more responses of one request, then the FINAL flag (decoupled models).

    Thread-safe; usable from threads the backend starts, after execute returned.
    """

    __slots__ = ("request", "_on_send", "_closed", "_lock")

    def __init__(
        self,
        request: InferenceRequest,
        on_send: Callable[[InferenceRequest, InferenceResponse | None, int], None],
    ) -> None:
        import threading

        self.request = request
        self._on_send = on_send
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        with self._lock:
            if self._closed:
                raise TritonError(ErrorCode.INTERNAL,
                                  "Unable to send response: the response sender is already closed "
                                  "(a response with the FINAL flag was sent)")
            if response is None and not flags & RESPONSE_COMPLETE_FINAL:
                raise TritonError.invalid_arg("a response sender needs a response or the FINAL flag")
            if flags & RESPONSE_COMPLETE_FINAL:
                self._closed = True
        self._on_send(self.request, response, flags)
