"""What the server asks of a READY model version: ``Servable``.

Implemented by models/version.LoadedVersion (a backend model with instances) and
ensemble.EnsembleVersion (a DAG of other versions). Both answer through the
request's callback, use the response cache the same way (cache_use.CachedVersion)
and keep the same statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..request import InferenceRequest
    from .cache import ResponseCache
    from .stats import ModelStats


class Servable(Protocol):
    name: str
    version: int
    config: ModelConfig
    stats: ModelStats
    decoupled: bool
    accepting: bool
    cache: ResponseCache | None  # set by the manager when the config enables it

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
