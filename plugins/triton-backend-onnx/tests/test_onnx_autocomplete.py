"""Auto-complete and validation by Triton's ONNX rules."""

from __future__ import annotations

import pytest
from onnx_backend_helpers import TensorProto, add_sub_model, helper, identity_model, load, save_model, vi

from triton_core.errors import ErrorCode, TritonError

F32, I32 = TensorProto.FLOAT, TensorProto.INT32


def io(cfg, kind):
    return [
        (t.name, t.data_type, t.dims, None if t.reshape is None else t.reshape.shape)
        for t in getattr(cfg, kind)
    ]


# ----------------------------------------------------------------------------- filling


def test_batchable_model_without_config(repo):
    m = load(add_sub_model(repo))
    cfg = m.config
    assert cfg.max_batch_size == 4
    assert cfg.dynamic_batching is not None
    assert io(cfg, "input") == [("INPUT0", "TYPE_INT32", [16], None), ("INPUT1", "TYPE_INT32", [16], None)]
    assert io(cfg, "output") == [("OUTPUT0", "TYPE_INT32", [16], None), ("OUTPUT1", "TYPE_INT32", [16], None)]
    assert cfg.backend == "onnxruntime" and cfg.platform == "onnxruntime_onnx"
    assert cfg.name == "addsub"


def test_symbolic_and_unknown_dims_become_minus_one(repo):
    m = load(identity_model(repo, "m", F32, ["batch", "n", None, 3]))
    assert m.config.max_batch_size == 4
    assert io(m.config, "input") == [("INPUT0", "TYPE_FP32", [-1, -1, 3], None)]


def test_non_batchable_model_keeps_full_dims(repo):
    m = load(identity_model(repo, "m", F32, [2, "n"]))
    assert m.config.max_batch_size == 0
    assert m.config.dynamic_batching is None
    assert io(m.config, "input") == [("INPUT0", "TYPE_FP32", [2, -1], None)]
    assert io(m.config, "output") == [("OUTPUT0", "TYPE_FP32", [2, -1], None)]


def test_one_fixed_output_first_dim_prevents_batching(repo):
    path = save_model(
        repo,
        "m",
        [
            helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"]),
            helper.make_node("Shape", ["INPUT0"], ["SHAPE"]),
        ],
        [vi("INPUT0", F32, ["b", 3])],
        [vi("OUTPUT0", F32, ["b", 3]), vi("SHAPE", TensorProto.INT64, [2])],
    )
    m = load(path)
    assert m.config.max_batch_size == 0
    assert io(m.config, "output")[1] == ("SHAPE", "TYPE_INT64", [2], None)


def test_max_batch_size_given_keeps_value_and_adds_dynamic_batching(repo):
    m = load(add_sub_model(repo), 'max_batch_size: 16')
    assert m.config.max_batch_size == 16
    assert m.config.dynamic_batching is not None


def test_max_batch_size_one_gets_no_dynamic_batching(repo):
    m = load(add_sub_model(repo), "max_batch_size: 1")
    assert m.config.max_batch_size == 1
    assert m.config.dynamic_batching is None


def test_existing_scheduler_is_kept(repo):
    m = load(add_sub_model(repo), "dynamic_batching { max_queue_delay_microseconds: 100 }")
    assert m.config.dynamic_batching.max_queue_delay_microseconds == 100
    m = load(add_sub_model(repo), "sequence_batching { }")
    assert m.config.dynamic_batching is None


def test_default_max_batch_size_from_backend_config(repo):
    m = load(add_sub_model(repo), backend_config={"default-max-batch-size": "32"})
    assert m.config.max_batch_size == 32
    m = load(add_sub_model(repo), backend_config={"default-max-batch-size": "0"})
    assert m.config.max_batch_size == 0 and m.config.dynamic_batching is None
    assert io(m.config, "input")[0] == ("INPUT0", "TYPE_INT32", [-1, 16], None)


def test_scalar_in_non_batching_model_becomes_dims_1_without_reshape(repo):
    m = load(identity_model(repo, "m", F32, []))
    assert m.config.max_batch_size == 0
    assert io(m.config, "input") == [("INPUT0", "TYPE_FP32", [1], None)]
    assert io(m.config, "output") == [("OUTPUT0", "TYPE_FP32", [1], None)]


def test_batched_scalar_becomes_dims_1_with_empty_reshape(repo):
    m = load(identity_model(repo, "m", F32, ["batch"]))
    assert m.config.max_batch_size == 4
    assert io(m.config, "input") == [("INPUT0", "TYPE_FP32", [1], [])]
    assert io(m.config, "output") == [("OUTPUT0", "TYPE_FP32", [1], [])]


def test_partial_config_inputs_given_outputs_filled(repo):
    cfg = """
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    """
    m = load(add_sub_model(repo), cfg)
    assert m.config.max_batch_size == 4
    assert [o.name for o in m.config.output] == ["OUTPUT0", "OUTPUT1"]
    assert m.config.output[0].dims == [16]


def test_partial_config_outputs_given_inputs_filled(repo):
    cfg = 'max_batch_size: 2 output [ { name: "OUTPUT1" data_type: TYPE_INT32 dims: [16] } ]'
    m = load(add_sub_model(repo), cfg)
    assert [i.name for i in m.config.input] == ["INPUT0", "INPUT1"]
    assert [o.name for o in m.config.output] == ["OUTPUT1"]  # a subset of outputs is fine


def test_partial_entries_get_type_and_dims(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" }, { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" dims: [16] } ]
    """
    m = load(add_sub_model(repo), cfg)
    assert io(m.config, "input")[0] == ("INPUT0", "TYPE_INT32", [16], None)
    assert io(m.config, "output") == [("OUTPUT0", "TYPE_INT32", [16], None)]


def test_full_config_is_not_auto_completed(repo):
    cfg = """
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [-1, 16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [-1, 16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [-1, 16] } ]
    """
    m = load(add_sub_model(repo), cfg)
    assert m.config.max_batch_size == 0
    assert m.config.dynamic_batching is None


def test_input_config_does_not_change_caller_config(repo):
    from triton_backend_onnx.autocomplete import Signature, TensorInfo, autocomplete
    from triton_core.config import ModelConfig

    sig = Signature(
        inputs={"x": TensorInfo("x", "tensor(float)", (-1, 2))},
        outputs={"y": TensorInfo("y", "tensor(float)", (-1, 2))},
    )
    original = ModelConfig()
    done = autocomplete(original, sig, "m")
    assert original.input == [] and original.max_batch_size == 0
    assert done.max_batch_size == 4


# ----------------------------------------------------------------------------- errors


def expect_load_error(path, pbtxt, *fragments, auto_complete=True, code=ErrorCode.INVALID_ARG):
    with pytest.raises(TritonError) as ei:
        load(path, pbtxt, auto_complete=auto_complete)
    assert ei.value.code is code, ei.value
    for f in fragments:
        assert f in ei.value.message, ei.value.message
    return ei.value


def test_max_batch_size_on_non_batchable_model_fails(repo):
    expect_load_error(
        identity_model(repo, "fixed", F32, [2, 3]), "max_batch_size: 8", "fixed", "does not support batching"
    )


def test_max_batch_size_with_full_config_on_fixed_first_dim_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [3] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [3] } ]
    """
    expect_load_error(identity_model(repo, "fixed", F32, [2, 3]), cfg, "fixed", "INPUT0", "first dimension")


def test_datatype_mismatch_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "addsub", "INPUT0", "TYPE_FP32", "TYPE_INT32")


def test_output_datatype_mismatch_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT64 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "addsub", "OUTPUT0", "TYPE_INT64")


def test_dims_mismatch_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [8] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "addsub", "INPUT0", "[8]", "[16]")


def test_rank_mismatch_fails(repo):
    cfg = """
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [-1, 16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [-1, 16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "INPUT0")


def test_input_variable_dim_matches_fixed_but_output_must_match_exactly(repo):
    path = identity_model(repo, "m", F32, ["b", 4])
    ok = """
    max_batch_size: 2
    input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [-1] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] } ]
    """
    load(path, ok)
    bad = ok.replace("dims: [4]", "dims: [-1]")
    expect_load_error(path, bad, "OUTPUT0", "[-1]", "[4]")


def test_unknown_input_name_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "BOGUS" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "addsub", "unexpected inference input 'BOGUS'", "INPUT1")


def test_unknown_output_name_fails(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "NOPE" data_type: TYPE_INT32 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "unexpected inference output 'NOPE'", "OUTPUT0, OUTPUT1")


def test_missing_input_fails_with_counts(repo):
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] } ]
    """
    expect_load_error(add_sub_model(repo), cfg, "addsub", "expects 1 inputs, model provides 2")


def test_scalar_config_dims_must_be_one(repo):
    cfg = """
    input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [2] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [1] } ]
    """
    expect_load_error(identity_model(repo, "m", F32, []), cfg, "scalar tensor 'INPUT0'")


def test_auto_complete_disabled_only_validates(repo):
    path = add_sub_model(repo)
    cfg = """
    max_batch_size: 8
    input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
            { name: "INPUT1" data_type: TYPE_INT32 dims: [16] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] } ]
    """
    m = load(path, cfg, auto_complete=False)
    assert m.config.dynamic_batching is None
    assert m.config.backend == "" and m.config.platform == ""
    assert [o.name for o in m.config.output] == ["OUTPUT0"]
    # An empty config is not completed, so it does not fit the model.
    expect_load_error(path, "", "addsub", "expects 0 inputs", auto_complete=False)
    # A partial entry is not filled either.
    expect_load_error(path, cfg.replace('name: "INPUT0" data_type: TYPE_INT32', 'name: "INPUT0"'),
                      "INPUT0", "no data_type", auto_complete=False)


def test_unsupported_onnx_type_fails(repo):
    path = save_model(
        repo,
        "seq",
        [helper.make_node("SequenceConstruct", ["INPUT0"], ["OUTPUT0"])],
        [vi("INPUT0", F32, [2])],
        [helper.make_tensor_sequence_value_info("OUTPUT0", F32, [2])],
    )
    expect_load_error(path, None, "seq", "OUTPUT0", "no Triton data type")
