"""Config parameters Triton's pytorch backend reads: meanings, defaults, bad values, unknown
keys, and the process-wide thread settings."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch_backend_helpers import instance, load, request, run, save_script

from triton_backend_torch.params import TorchParameters
from triton_backend_torch.threads import ThreadSettings
from triton_core.config import parse_pbtxt
from triton_core.errors import ErrorCode, TritonError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

IO = """
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "y__0" data_type: TYPE_INT32 dims: [1] }]
"""


def _param(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n'


class InferenceFlag(torch.nn.Module):
    """1 when the model ran under torch.inference_mode (its results are inference tensors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full([1], int(torch.ones_like(x).is_inference()), dtype=torch.int32)


def test_defaults_are_tritons():
    p = TorchParameters.from_config(parse_pbtxt(""), "m")
    assert p.inference_mode and p.optimized_execution and p.cudnn
    assert not p.weight_sharing and not p.cache_cleaning
    assert p.tensor_fuser is None and p.jit_profiling is None and p.jit_executor is None
    assert p.intra_op_threads is None and p.inter_op_threads is None
    assert p.method == "forward"


def test_every_key_parses():
    text = "".join(_param(k, v) for k, v in {
        "DISABLE_OPTIMIZED_EXECUTION": "true", "INFERENCE_MODE": "false", "DISABLE_CUDNN": "1",
        "ENABLE_TENSOR_FUSER": "off", "ENABLE_JIT_PROFILING": "on", "ENABLE_JIT_EXECUTOR": "FALSE",
        "ENABLE_WEIGHT_SHARING": "True", "CACHE_CLEANING_ENABLED": "true",
        "INTRA_OP_THREAD_COUNT": "2", "INTER_OP_THREAD_COUNT": "3", "MODULE_METHOD_NAME": "run",
        "TORCH_COMPILE_OPTIONAL_PARAMETERS": '{\\"disable\\": true}'}.items())
    p = TorchParameters.from_config(parse_pbtxt(text), "m")
    assert not p.optimized_execution and not p.inference_mode and not p.cudnn
    assert p.tensor_fuser is False and p.jit_profiling is True and p.jit_executor is False
    assert p.weight_sharing and p.cache_cleaning
    assert (p.intra_op_threads, p.inter_op_threads) == (2, 3)
    assert p.method == "run" and p.compile_options == {"disable": True}


@pytest.mark.parametrize(("key", "value", "words"), [
    ("INFERENCE_MODE", "maybe", "failed to convert 'maybe' to boolean value"),
    ("INTRA_OP_THREAD_COUNT", "many", "failed to convert 'many' to an integer"),
    ("INTER_OP_THREAD_COUNT", "-2", "must be >= 0"),
    ("MODULE_METHOD_NAME", "not a name", "is not a method name"),
    ("TORCH_COMPILE_OPTIONAL_PARAMETERS", "[1]", "expected a JSON object"),
])
def test_bad_value_fails_the_load_naming_the_key(repo, key, value, words):
    folder = save_script(repo, "m", InferenceFlag(), IO + _param(key, value))
    with pytest.raises(TritonError) as e:
        load(folder)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert f"parameter '{key}'" in e.value.message and words in e.value.message


def test_unknown_key_is_a_warning(repo, caplog):
    folder = save_script(repo, "m", InferenceFlag(), IO + _param("ENABLE_NVFUSER", "true"))
    with caplog.at_level(logging.WARNING, "triton_backend_torch"):
        m = load(folder)
    assert "parameter 'ENABLE_NVFUSER' is not read by the pytorch backend" in caplog.text
    assert m.params.unknown == ("ENABLE_NVFUSER",)


@pytest.mark.parametrize(("value", "expected"), [(None, 1), ("true", 1), ("false", 0)])
def test_inference_mode(repo, value, expected):
    folder = save_script(repo, "m", InferenceFlag(),
                         IO + (_param("INFERENCE_MODE", value) if value else ""))
    (resp,), _ = run(instance(load(folder)), request("m", x=np.ones(1, np.float32)))
    assert int(resp.output("y__0").as_numpy()[0]) == expected


def test_disable_optimized_execution_turns_the_graph_executor_optimisation_off(repo):
    folder = save_script(repo, "m", InferenceFlag(), IO + _param("DISABLE_OPTIMIZED_EXECUTION", "true"))
    inst = instance(load(folder))
    with inst.runner.context(inst.params):
        assert torch._C._get_graph_executor_optimize() is False  # noqa: SLF001
    assert torch._C._get_graph_executor_optimize() is True  # noqa: SLF001 - thread-local, restored


def test_weight_sharing_loads_once_per_device(repo):
    folder = save_script(repo, "m", InferenceFlag(), IO + _param("ENABLE_WEIGHT_SHARING", "true"))
    m = load(folder)
    instance(m), instance(m)
    assert list(m._shared) == ["cpu"]  # noqa: SLF001


def test_thread_counts_are_process_wide_the_second_model_gets_a_warning(caplog):
    threads = ThreadSettings()
    now = torch.get_num_threads()  # ask for what torch has: nothing changes for other tests
    with caplog.at_level(logging.WARNING, "triton_backend_torch"):
        threads.apply("first", now, None)
        threads.apply("second", now + 1, None)
    assert torch.get_num_threads() == now
    assert (f"model 'second' asks INTRA_OP_THREAD_COUNT={now + 1} but this process already uses {now} "
            "(set by model 'first')") in caplog.text
