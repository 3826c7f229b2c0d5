"""Session options from config parameters, and execution-provider selection."""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx_backend_helpers import TensorProto, add_sub_model, instance, load, request, run

from triton_backend_onnx.providers import COREML, CPU, CUDA, TENSORRT, is_strict, plan_providers
from triton_backend_onnx.session_options import SessionSettings
from triton_core.config import parse_pbtxt
from triton_core.errors import ErrorCode, TritonError


def params(**kv) -> str:
    return " ".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}' for k, v in kv.items())


# ----------------------------------------------------------------------------- session options


@pytest.mark.parametrize(
    ("level", "expected"),
    [(None, "ORT_ENABLE_ALL"), (0, "ORT_ENABLE_ALL"), (-1, "ORT_ENABLE_BASIC"), (1, "ORT_ENABLE_EXTENDED"),
     (2, "ORT_DISABLE_ALL")],
)
def test_graph_optimization_level(level, expected):
    text = "" if level is None else f"optimization {{ graph {{ level: {level} }} }}"
    s = SessionSettings.from_config(parse_pbtxt(text), "m")
    assert s.graph_optimization_level == expected
    so = s.session_options()
    assert so.graph_optimization_level == getattr(ort.GraphOptimizationLevel, expected)


def test_thread_counts_execution_mode_and_memory_flags():
    text = params(
        intra_op_thread_count="3",
        inter_op_thread_count="2",
        execution_mode="1",
        enable_mem_arena="false",
        enable_mem_pattern="0",
        **{"session.use_device_allocator_for_initializers": "1",
           "memory.enable_memory_arena_shrinkage": "cpu:0"},
    )
    s = SessionSettings.from_config(parse_pbtxt(text), "m")
    so = s.session_options()
    assert so.intra_op_num_threads == 3
    assert so.inter_op_num_threads == 2
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert so.enable_cpu_mem_arena is False
    assert so.enable_mem_pattern is False
    assert so.get_session_config_entry("session.use_device_allocator_for_initializers") == "1"
    assert s.run_options() is not None
    assert s.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0"}


def test_defaults_leave_onnxruntime_defaults():
    s = SessionSettings.from_config(parse_pbtxt(""), "m")
    so = s.session_options()
    assert so.intra_op_num_threads == 0 and so.inter_op_num_threads == 0
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert s.run_options() is None


@pytest.mark.parametrize(
    "text",
    [params(execution_mode="2"), params(intra_op_thread_count="many"), params(enable_mem_pattern="maybe"),
     params(inter_op_thread_count="-1")],
)
def test_bad_session_parameters_fail(text):
    with pytest.raises(TritonError) as ei:
        SessionSettings.from_config(parse_pbtxt(text), "mymodel")
    assert ei.value.code is ErrorCode.INVALID_ARG
    assert "mymodel" in ei.value.message


def test_instance_session_gets_the_options(repo):
    m = load(add_sub_model(repo), params(intra_op_thread_count="2"))
    inst = instance(m)
    assert inst.session.get_session_options().intra_op_num_threads == 2
    assert inst.providers == [CPU]


# ----------------------------------------------------------------------------- providers (planning)

COREML_CFG = """
optimization { execution_accelerators { cpu_execution_accelerator [
  { name: "coreml" parameters { key: "MLComputeUnits" value: "CPUAndNeuralEngine" }
                   parameters { key: "ModelFormat" value: "MLProgram" }
                   parameters { key: "RequireStaticInputShapes" value: "true" }
                   parameters { key: "EnableOnSubgraphs" value: "0" } } ] } }
"""


def test_cpu_only_by_default():
    plan = plan_providers(parse_pbtxt(""), "m", "KIND_CPU", 0, [CPU], strict=True)
    assert plan.providers == [(CPU, {})]
    assert plan.requested == []


def test_gpu_instance_gets_cuda_on_its_device():
    cfg = parse_pbtxt(params(cudnn_conv_algo_search="1", gpu_mem_limit="1000"))
    plan = plan_providers(cfg, "m", "KIND_GPU", 3, [CUDA, CPU], strict=True)
    assert plan.names == [CUDA, CPU]
    opts = plan.providers[0][1]
    assert opts["device_id"] == "3"
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"
    assert opts["gpu_mem_limit"] == "1000"


def test_gpu_accelerators_tensorrt_then_cuda():
    cfg = parse_pbtxt(
        """optimization { execution_accelerators { gpu_execution_accelerator [
           { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } },
           { name: "cuda" parameters { key: "cudnn_conv_use_max_workspace" value: "1" } } ] } }"""
    )
    plan = plan_providers(cfg, "m", "KIND_GPU", 1, [TENSORRT, CUDA, CPU], strict=True)
    assert plan.names == [TENSORRT, CUDA, CPU]
    assert plan.providers[0][1] == {"trt_fp16_enable": "1", "device_id": "1"}
    assert plan.providers[1][1]["cudnn_conv_use_max_workspace"] == "1"
    # CPU instances ignore GPU accelerators, as Triton does.
    assert plan_providers(cfg, "m", "KIND_CPU", 0, [TENSORRT, CUDA, CPU], strict=True).names == [CPU]


def test_gpu_instance_without_cuda_strict_fails_naming_provider_and_available():
    with pytest.raises(TritonError) as ei:
        plan_providers(
            parse_pbtxt(""), "gpu_model", "KIND_GPU", 0, [CPU, "AzureExecutionProvider"], strict=True
        )
    msg = ei.value.message
    assert ei.value.code is ErrorCode.UNAVAILABLE
    assert "gpu_model" in msg and CUDA in msg and "CPUExecutionProvider, AzureExecutionProvider" in msg


def test_gpu_instance_without_cuda_falls_back_to_cpu(caplog):
    with caplog.at_level(logging.WARNING, logger="triton_backend_onnx"):
        plan = plan_providers(parse_pbtxt(""), "m", "KIND_GPU", 0, [CPU], strict=False)
    assert plan.names == [CPU]
    assert plan.skipped == [CUDA]
    assert CUDA in caplog.text


def test_coreml_options_are_checked_and_normalised():
    plan = plan_providers(parse_pbtxt(COREML_CFG), "m", "KIND_CPU", 0, [COREML, CPU], strict=True)
    assert plan.names == [COREML, CPU]
    assert plan.providers[0][1] == {
        "MLComputeUnits": "CPUAndNeuralEngine",
        "ModelFormat": "MLProgram",
        "RequireStaticInputShapes": "1",
        "EnableOnSubgraphs": "0",
    }


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [("MLComputeUnits", "GPUOnly", "must be one of"), ("Bogus", "1", "unknown parameter 'Bogus'"),
     ("EnableOnSubgraphs", "perhaps", "boolean")],
)
def test_bad_coreml_options_fail(key, value, fragment):
    cfg = parse_pbtxt(
        "optimization { execution_accelerators { cpu_execution_accelerator [ "
        f'{{ name: "coreml" parameters {{ key: "{key}" value: "{value}" }} }} ] }} }}'
    )
    with pytest.raises(TritonError) as ei:
        plan_providers(cfg, "m", "KIND_CPU", 0, [COREML, CPU], strict=False)
    assert ei.value.code is ErrorCode.INVALID_ARG
    assert fragment in ei.value.message


def test_unknown_accelerator_fails_even_when_not_strict():
    cfg = parse_pbtxt(
        'optimization { execution_accelerators { cpu_execution_accelerator [ { name: "warpdrive" } ] } }'
    )
    with pytest.raises(TritonError) as ei:
        plan_providers(cfg, "m", "KIND_CPU", 0, [CPU], strict=False)
    assert "unknown Execution Accelerator 'warpdrive'" in ei.value.message
    cfg = parse_pbtxt(
        'optimization { execution_accelerators { cpu_execution_accelerator [ { name: "cuda" } ] } }'
    )
    with pytest.raises(TritonError) as ei:
        plan_providers(cfg, "m", "KIND_CPU", 0, [CPU], strict=False)
    assert "belongs in gpu_execution_accelerator" in ei.value.message


def test_strict_from_parameter_or_backend_config():
    assert is_strict(parse_pbtxt(""), "m") is False
    assert is_strict(parse_pbtxt(params(strict_execution_providers="true")), "m") is True
    assert is_strict(parse_pbtxt(""), "m", {"strict-execution-providers": "1"}) is True
    assert is_strict(parse_pbtxt(params(strict_execution_providers="false")), "m",
                     {"strict-execution-providers": "1"}) is False


def test_session_that_drops_a_provider_is_refused_when_strict():
    plan = plan_providers(parse_pbtxt(""), "m", "KIND_GPU", 0, [CUDA, CPU], strict=True)
    with pytest.raises(TritonError) as ei:
        plan.check_session([CPU], "m", "m_0")
    assert CUDA in ei.value.message
    plan.strict = False
    plan.check_session([CPU], "m", "m_0")  # a warning only


# ----------------------------------------------------------------------------- providers (real sessions)

needs_no_coreml = pytest.mark.skipif(
    COREML in ort.get_available_providers(), reason="this onnxruntime has the CoreML provider"
)


@needs_no_coreml
def test_coreml_requested_where_missing_strict_fails_at_instance_creation(repo):
    m = load(add_sub_model(repo), COREML_CFG + params(strict_execution_providers="true"))
    with pytest.raises(TritonError) as ei:
        instance(m)
    msg = ei.value.message
    assert COREML in msg and "addsub" in msg and "CPUExecutionProvider" in msg
    if sys.platform != "darwin":
        assert "macOS" in msg


@needs_no_coreml
def test_coreml_requested_where_missing_falls_back_to_cpu(repo, caplog):
    m = load(add_sub_model(repo), COREML_CFG)
    with caplog.at_level(logging.WARNING, logger="triton_backend_onnx"):
        inst = instance(m)
    assert inst.providers == [CPU]
    assert COREML in caplog.text
    a = np.ones((1, 16), dtype=np.int32)
    (resp,), _ = run(inst, request(INPUT0=a, INPUT1=a))
    assert resp.error is None
    np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), a * 2)


@pytest.mark.skipif(
    COREML not in ort.get_available_providers(),
    reason="the CoreML execution provider exists only in onnxruntime for macOS; the macos-arm64 "
    "workflow runs this",
)
def test_coreml_session_runs_strict(repo):
    m = load(add_sub_model(repo), COREML_CFG + params(strict_execution_providers="true"))
    inst = instance(m)
    assert inst.providers[0] == COREML
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    (resp,), _ = run(inst, request(INPUT0=a, INPUT1=a))
    assert resp.error is None
    np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), a * 2)


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="onnxruntime-gpu is installed")
def test_gpu_instance_without_onnxruntime_gpu(repo):
    path = add_sub_model(repo)
    inst = instance(load(path), kind="KIND_GPU")
    assert inst.providers == [CPU]
    with pytest.raises(TritonError) as ei:
        instance(load(path, params(strict_execution_providers="yes")), kind="KIND_GPU")
    assert CUDA in ei.value.message and "onnxruntime-gpu" in ei.value.message


@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs onnxruntime-gpu")
def test_gpu_instance_with_onnxruntime_gpu(repo):  # pragma: no cover - GPU machines only
    m = load(add_sub_model(repo, elem=TensorProto.FLOAT), params(strict_execution_providers="true"))
    inst = instance(m, kind="KIND_GPU")
    assert inst.providers[0] == CUDA
    a = np.ones((2, 16), dtype=np.float32)
    (resp,), _ = run(inst, request(INPUT0=a, INPUT1=a))
    np.testing.assert_array_equal(resp.output("OUTPUT1").as_numpy(), a * 0)
