"""Execution drivers: how a model instance's batches run, one driver per instance,
chosen once at load.

- ``ThreadDriver`` (thread_driver.py): the instance's own thread takes batches from the
  scheduler and calls the blocking ``Instance.execute``, as the ABI promises. Any
  backend, any scheduler.
- ``LoopDriver`` (loop_driver.py): for instances that wait on another process
  (``Instance.begin_execute`` whose PendingExecute tells a descriptor, the python
  backend) under the plain FIFO scheduler: the event loop sends each request and reads
  its result when the descriptor turns readable, up to ``pipeline_depth`` outstanding,
  with no thread in between.

A driver's one entry is ``wake()``: the scheduler holds work (a thread driver's thread
is woken by the scheduler itself; a loop driver fetches it on its loop). Each execute
ends through scheduling.completion.Completion, whatever the driver.
"""

from __future__ import annotations

from typing import Protocol

from .. import abi
from .scheduler import Scheduler


class Driver(Protocol):
    def start(self) -> None:
        """Begin taking work."""
        ...

    def wake(self) -> None:
        """The scheduler received a request (any thread)."""
        ...

    def stop(self, deadline: float) -> None:
        """The scheduler is closed and drained: finish by ``deadline`` (time.monotonic)."""
        ...


_NO_BEGIN = abi.Instance.begin_execute  # instances need not subclass abi.Instance


def loop_drivable(instance: abi.Instance, scheduler: Scheduler, decoupled: bool) -> bool:
    """Whether ``instance`` gets a LoopDriver: it starts executes without waiting for them,
    and each request runs alone, unordered, without state (the FIFO scheduler)."""
    has_begin = getattr(type(instance), "begin_execute", _NO_BEGIN) is not _NO_BEGIN
    return has_begin and not decoupled and scheduler.fifo is not None
