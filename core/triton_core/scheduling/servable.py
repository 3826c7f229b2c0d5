"""What the server asks of a READY model version: ``Servable``.

Implemented by models/version.LoadedVersion (a backend model with instances) and
ensemble.EnsembleVersion (a DAG of other versions). Both answer through the
request's callback, use the response cache the same way (cache_use.CachedVersion)
and keep the same statistics.

``fast_path`` is the one optional part: a LoadedVersion's ways to run a request
without a thread hop (``FastPath``); None for a version that has none (an
ensemble runs its steps through their own versions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..request import InferenceRequest
    from .cache import ResponseCache
    from .pipeline import LoopPipeline
    from .stats import ModelStats


class FastPath(Protocol):
    """Running a request on the calling thread (inline) or awaiting it on the event loop
    (LoopPipeline) instead of queueing it for an instance thread."""

    @property
    def pipelined(self) -> bool:
        """The instances keep a second request while they run one (begin_execute)."""
        ...

    @property
    def begin_capable(self) -> bool:
        """The instances start executes without waiting for them (Instance.begin_execute)."""
        ...

    def inline_ready(self) -> bool:
        """Cheap pre-check for try_inline (no locks taken)."""
        ...

    def try_inline(self, req: InferenceRequest, batch_size: int,
                   on_defer: Callable[[], None] | None = None) -> bool:
        """Run ``req`` now on this thread; False: the caller must submit() it."""
        ...

    def pipeline_on(self, loop: asyncio.AbstractEventLoop) -> LoopPipeline | None:
        """The loop's pipeline for this version, or None."""
        ...


class Servable(Protocol):
    name: str
    version: int
    config: ModelConfig
    stats: ModelStats
    decoupled: bool
    accepting: bool
    cache: ResponseCache | None  # set by the manager when the config enables it
    fast_path: FastPath | None

    def submit(self, req: InferenceRequest, batch_size: int) -> None:
        """Run a validated request; its callback gets the responses. Raises TritonError
        when it is refused up front (the callback is then never called)."""
        ...

    def cancel(self, req: InferenceRequest) -> None:
        """The client gave up on ``req``."""
        ...

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``timeout``), free all."""
        ...

    def instances_ready(self) -> bool:
        """Everything it runs on says it can serve."""
        ...

    def cache_tag(self) -> str:
        """What, besides name and version, identifies this load's results."""
        ...
