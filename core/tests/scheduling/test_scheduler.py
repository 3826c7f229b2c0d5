"""make_scheduler: the config picks the scheduler, and callers read its capabilities."""

import pytest

from triton_core.config.io import parse_pbtxt
from triton_core.scheduling.queue import DynamicBatcher, FifoQueue
from triton_core.scheduling.scheduler import make_scheduler
from triton_core.scheduling.sequence import SequenceScheduler

BASE = """
name: "m" backend: "expr" max_batch_size: 4
input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
"""


@pytest.mark.parametrize("extra, cls, batching, ordered, stateful, fifo", [
    ("", FifoQueue, False, False, False, True),
    ("dynamic_batching { preserve_ordering: true }", DynamicBatcher, True, True, False, False),
    ("sequence_batching { }", SequenceScheduler, True, False, True, False),
])
def test_the_config_picks_the_scheduler(extra, cls, batching, ordered, stateful, fifo):
    q = make_scheduler(parse_pbtxt(BASE + extra), workers=2)
    assert type(q) is cls
    assert (q.batching, q.preserve_ordering, q.stateful) == (batching, ordered, stateful)
    assert (q.fifo is q) if fifo else q.fifo is None
    assert len(q) == 0 and q.drain() == []
    q.close()
    assert q.take(0) is None and q.take(1) is None  # every worker sees the end
