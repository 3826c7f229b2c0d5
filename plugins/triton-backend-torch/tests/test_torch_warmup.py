"""model_warmup runs through the pytorch backend before the model turns ready, and a warmup
the model cannot run fails the load with the model's error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_backend_helpers import save_script

from triton_backend_torch import plugin
from triton_core.errors import TritonError
from triton_core.request import InferenceRequest
from triton_core.tensor import Tensor
from triton_core.testing import make_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class CountCalls(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if bool((x < 0).any()):
            raise RuntimeError("negative warmup input")
        return self.calls.expand(x.shape[0], 1).clone()


def _config(value: str) -> str:
    return f"""
max_batch_size: 4
input [{{ name: "x" data_type: TYPE_FP32 dims: [2] }}]
output [{{ name: "calls" data_type: TYPE_FP32 dims: [1] }}]
parameters {{ key: "INFERENCE_MODE" value {{ string_value: "false" }} }}
model_warmup [{{ name: "w" batch_size: 2 count: 3
                inputs {{ key: "x" value {{ data_type: TYPE_FP32 dims: [2] {value} }} }} }}]
"""


def test_warmup_runs_before_ready(tmp_path):
    save_script(tmp_path, "counted", CountCalls(), _config("zero_data: true"))
    server = make_server(tmp_path, plugin)
    server.start()
    try:
        req = InferenceRequest(model_name="counted", inputs={
            "x": Tensor.from_numpy("x", np.ones((1, 2), np.float32))})
        # three warmup runs happened: this request is the fourth call of the module
        assert float(server.infer(req, timeout=30).output("calls").as_numpy()[0, 0]) == 4
    finally:
        server.stop()


def test_failing_warmup_fails_the_load(tmp_path):
    save_script(tmp_path, "counted", CountCalls(), _config('input_data_file: "neg"'))
    (tmp_path / "counted" / "warmup").mkdir()
    (tmp_path / "counted" / "warmup" / "neg").write_bytes(np.array([-1, -1], np.float32).tobytes())
    server = make_server(tmp_path, plugin, model_control_mode="explicit")
    server.start()
    try:
        with pytest.raises(TritonError) as e:
            server.load_model("counted")
        assert "negative warmup input" in e.value.message
    finally:
        server.stop()
