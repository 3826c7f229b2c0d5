"""The scheduler of a model version: what its instance workers take requests from.

Three implement ``Scheduler``: queue.FifoQueue (no scheduler in the config),
queue.DynamicBatcher (``dynamic_batching``) and sequence.SequenceScheduler
(``sequence_batching``); ``make_scheduler`` picks one from the config. Callers
ask the capability attributes, never the class:

- ``batching``: a taken batch may hold several requests;
- ``preserve_ordering``: responses must leave in arrival order;
- ``stateful``: ``prepare`` adds rows and inputs before execute and ``done``
  keeps state after it (for the others both only pass the requests through);
- ``fifo``: the scheduler as a FifoQueue (the loop driver's ``take_nowait``),
  None for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..config import ModelConfig
from ..errors import TritonError
from ..request import InferenceRequest
from .clock import MONOTONIC, Clock
from .queue import DynamicBatcher, FifoQueue, _Item
from .sequence import SequenceScheduler


class Scheduler(Protocol):
    name: str

    @property
    def batching(self) -> bool: ...

    @property
    def preserve_ordering(self) -> bool: ...

    @property
    def stateful(self) -> bool: ...

    @property
    def fifo(self) -> FifoQueue | None: ...

    def __len__(self) -> int:
        """Requests queued (not yet taken)."""
        ...

    def put(self, req: InferenceRequest, batch_size: int) -> _Item:
        """Queue a request; raises TritonError when it is refused."""
        ...

    def take(self, worker: int = 0) -> list[_Item] | None:
        """Block for ``worker``'s next batch ([]: come back); None once closed."""
        ...

    def remove(self, req: InferenceRequest) -> _Item | None:
        """Take a still-queued request out (cancellation); None when it is not."""
        ...

    def close(self) -> None:
        """Refuse new requests; workers' take() returns None once nothing is left."""
        ...

    def drain(self) -> list[_Item]:
        """Take every queued request out (unload)."""
        ...

    def prepare(self, items: Sequence[_Item]) -> list[InferenceRequest]:
        """The batch to execute for ``items``."""
        ...

    def done(self, items: Sequence[_Item], responses: Sequence[Any]) -> list[Any]:
        """After the execute of ``items``: the responses that go to their requests."""
        ...


def make_scheduler(config: ModelConfig, workers: int,
                   on_reject: Callable[[_Item, TritonError], None] | None = None,
                   model_path: Path | None = None, clock: Clock = MONOTONIC) -> Scheduler:
    """The scheduler ``config`` asks for, shared by ``workers`` instance threads."""
    if config.sequence_batching is not None:
        return SequenceScheduler(config, workers, on_reject, model_path, clock)
    if config.dynamic_batching is not None:
        return DynamicBatcher(config, workers, on_reject, clock)
    return FifoQueue(config, workers, on_reject, clock)
