"""Protocol-neutral inference request and response."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import TritonError
from .tensor import Tensor


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)

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
    # Set by the core: called once with the final response, from a worker thread.
    callback: Callable[[InferenceResponse], None] | None = None
    cancelled: bool = False

    def is_cancelled(self) -> bool:
        return self.cancelled

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
