"""A stateful TorchScript model under the core's sequence batcher, configured the way Triton's
pytorch backend wants it: control and implicit-state tensors named <name>__<index>."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_backend_helpers import save_script

from triton_backend_torch import plugin
from triton_core.request import REQUEST_FLAG_SEQUENCE_END, REQUEST_FLAG_SEQUENCE_START, InferenceRequest
from triton_core.tensor import Tensor
from triton_core.testing import make_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Accumulate(torch.nn.Module):
    """OUT = running sum of IN over the sequence (START resets it); the state is the sum."""

    def forward(self, value: torch.Tensor, start: torch.Tensor, state: torch.Tensor):
        total = state * (1 - start) + value
        return total, total.clone()


CONFIG = """
max_batch_size: 4
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [{ name: "START__1" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] }]
  state [{ input_name: "STATE__2" output_name: "STATE__1" data_type: TYPE_INT32 dims: [1]
           initial_state { name: "zero" data_type: TYPE_INT32 dims: [1] zero_data: true } }]
}
input [{ name: "IN__0" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT__0" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def test_sequences_keep_their_own_running_sums(tmp_path):
    save_script(tmp_path, "acc", Accumulate(), CONFIG)
    server = make_server(tmp_path, plugin)
    server.start()
    try:
        sums = {21: 0, 22: 0}
        steps = [(21, 3), (22, 10), (21, 4), (22, 20), (21, 5)]
        last = {corr: max(i for i, (c, _) in enumerate(steps) if c == corr) for corr in sums}
        first = {corr: min(i for i, (c, _) in enumerate(steps) if c == corr) for corr in sums}
        for i, (corr, v) in enumerate(steps):
            flags = (REQUEST_FLAG_SEQUENCE_START if i == first[corr] else 0) | \
                (REQUEST_FLAG_SEQUENCE_END if i == last[corr] else 0)
            req = InferenceRequest(model_name="acc", correlation_id=corr, flags=flags, inputs={
                "IN__0": Tensor.from_numpy("IN__0", np.array([[v]], np.int32))})
            resp = server.infer(req, timeout=30)
            assert resp.error is None, resp.error
            sums[corr] += v
            assert int(resp.output("OUT__0").as_numpy()[0, 0]) == sums[corr]
            assert [o.name for o in resp.outputs] == ["OUT__0"]  # the state stays in the server
    finally:
        server.stop()
