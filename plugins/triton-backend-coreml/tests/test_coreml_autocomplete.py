"""Config auto-complete and validation from real Core ML specs (any OS)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from coreml_backend_helpers import load

from triton_core.errors import ErrorCode, TritonError


def _io(cfg):
    return ([(i.name, i.data_type, i.dims, i.format) for i in cfg.input],
            [(o.name, o.data_type, o.dims) for o in cfg.output])


def test_range_first_dim_gives_max_batch_size_and_dynamic_batching(models, cache):
    m = load(models["relu_range"], cache=cache)
    assert m.config.max_batch_size == 4
    assert m.config.dynamic_batching is not None
    assert _io(m.config) == ([("x", "TYPE_FP32", [4], "FORMAT_NONE")], [("y", "TYPE_FP32", [4])])
    assert m.config.backend == "coreml" and m.config.platform == "coreml"
    assert m.batch_mode == "dimension"


def test_default_max_batch_size_is_capped_by_the_models_range(models, cache):
    m = load(models["relu_range"], cache=cache, backend_config={"default-max-batch-size": "32"})
    assert m.config.max_batch_size == 8


def test_max_batch_size_above_the_range_is_refused(models, cache):
    with pytest.raises(TritonError) as e:
        load(models["relu_range"], "max_batch_size: 16", cache=cache)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "max_batch_size 16 is above the largest batch the Core ML model takes (8)" in e.value.message


def test_enumerated_first_dim_batches(models, cache):
    m = load(models["relu_enum"], cache=cache)
    assert m.config.max_batch_size == 4 and m.batch_mode == "dimension"
    assert _io(m.config)[0] == [("x", "TYPE_FP32", [4], "FORMAT_NONE")]


def test_fixed_shapes_and_types(models, cache):
    m = load(models["add_fixed"], cache=cache)
    assert m.config.max_batch_size == 0 and m.config.dynamic_batching is None
    assert _io(m.config) == (
        [("a", "TYPE_INT32", [2, 3], "FORMAT_NONE"), ("b", "TYPE_INT32", [2, 3], "FORMAT_NONE"),
         ("f", "TYPE_FP16", [3], "FORMAT_NONE")],
        [("s", "TYPE_INT32", [2, 3]), ("h", "TYPE_FP16", [3])],
    )


def test_max_batch_size_on_a_fixed_model_batches_as_a_list(models, cache):
    m = load(models["add_fixed"], "max_batch_size: 8", cache=cache)
    assert m.batch_mode == "list"
    assert _io(m.config)[0][0] == ("a", "TYPE_INT32", [2, 3], "FORMAT_NONE")


def test_neural_network_mlmodel_double(models, cache):
    m = load(models["nn_double"], cache=cache)
    assert m.signature.model_type == "neuralNetwork"
    assert m.model_file.format == "mlmodel"
    assert _io(m.config) == ([("x", "TYPE_FP64", [3], "FORMAT_NONE")], [("y", "TYPE_FP64", [3])])


@pytest.mark.parametrize("name, channels", [("image_rgb", 3), ("image_bgr", 3), ("image_gray", 1)])
def test_image_inputs_are_uint8_hwc(models, cache, name, channels):
    m = load(models[name], cache=cache)
    assert _io(m.config)[0] == [("image", "TYPE_UINT8", [4, 5, channels], "FORMAT_NHWC")]


def test_image_input_in_nchw_when_the_config_says_so(models, cache):
    m = load(models["image_rgb"], 'input [{ name: "image" format: FORMAT_NCHW }]', cache=cache)
    assert _io(m.config)[0] == [("image", "TYPE_UINT8", [3, 4, 5], "FORMAT_NCHW")]


def test_image_with_a_tensor_format_is_refused(models, cache):
    with pytest.raises(TritonError, match="input 'image' is an image: its format must be FORMAT_NHWC"):
        load(models["image_rgb"], 'input [{ name: "image" data_type: TYPE_UINT8 dims: [4, 5, 3] '
                                  'format: FORMAT_NONE }] output [{ name: "m" data_type: TYPE_FP32 '
                                  "dims: [1, 3] }]", cache=cache, auto_complete=False)


def test_classifier_outputs_and_labels(models, cache):
    m = load(models["classifier"], cache=cache)
    outs = {o.name: o for o in m.config.output}
    assert (outs["classLabel"].data_type, outs["classLabel"].dims) == ("TYPE_STRING", [1])
    probs = outs["classLabel_probs"]
    assert (probs.data_type, probs.dims) == ("TYPE_FP32", [3])
    # the labels go next to the compiled copy (the repository may be read-only)
    label_file = Path(probs.label_filename)
    assert label_file.is_relative_to(cache)
    assert label_file.read_text().splitlines() == ["cat", "dog", "emu"]
    assert m.signature.classifier.labels == ("cat", "dog", "emu")


def test_classifier_keeps_a_configured_label_file(models, cache):
    m = load(models["classifier"], 'output [{ name: "classLabel_probs" label_filename: "mine.txt" }]',
             cache=cache)
    assert m.config.output_by_name("classLabel_probs").label_filename == "mine.txt"


def test_stateful_model_gets_implicit_state(models, cache):
    m = load(models["stateful"], cache=cache)
    (state,) = m.config.sequence_batching["state"]
    assert state["input_name"] == "acc" and state["output_name"] == "acc_out"
    assert state["data_type"] == "TYPE_FP16" and state["dims"] == [1, 4]
    assert m.config.max_batch_size == 0
    assert [i.name for i in m.config.input] == ["x"]


def test_a_state_the_model_does_not_have_is_refused(models, cache):
    with pytest.raises(TritonError, match="sequence_batching state 'nope' is not a state of the Core ML "
                                          r"model \(states: acc\)"):
        load(models["stateful"], 'sequence_batching { state [{ input_name: "nope" output_name: "o" '
                                 "data_type: TYPE_FP16 dims: [1, 4] }] }", cache=cache)


# validation ----------------------------------------------------------------------------

FIXED = ('input [{ name: "a" data_type: TYPE_INT32 dims: [2, 3] }, { name: "b" data_type: TYPE_INT32 '
         'dims: [2, 3] }, { name: "f" data_type: TYPE_FP16 dims: [3] }]\n'
         'output [{ name: "s" data_type: TYPE_INT32 dims: [2, 3] }, { name: "h" data_type: TYPE_FP16 '
         "dims: [3] }]\n")


@pytest.mark.parametrize("old, new, words", [
    ('name: "a" data_type: TYPE_INT32', 'name: "a" data_type: TYPE_FP32',
     "configuration expects datatype TYPE_FP32 for input 'a', model provides TYPE_INT32"),
    ('name: "b" data_type: TYPE_INT32 dims: [2, 3]', 'name: "b" data_type: TYPE_INT32 dims: [3, 3]',
     "configuration expects dims [3,3] for input 'b', model provides [2,3]"),
    ('name: "s" data_type: TYPE_INT32 dims: [2, 3]', 'name: "s" data_type: TYPE_INT32 dims: [6]',
     "configuration expects dims [6] for output 's', model provides [2,3]"),
    ('name: "a"', 'name: "z"', "unexpected inference input 'z', allowed inputs are: a, b, f"),
    ('name: "h"', 'name: "q"', "unexpected inference output 'q', allowed outputs are: h, s"),
    ('{ name: "f" data_type: TYPE_FP16 dims: [3] }', '',
     "the Core ML model's input 'f' is missing from the configuration"),
])
def test_validation_errors(models, cache, old, new, words):
    text = FIXED.replace(old, new, 1)
    text = text.replace(", ]", "]")
    with pytest.raises(TritonError) as e:
        load(models["add_fixed"], text, cache=cache, auto_complete=False)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert e.value.message.startswith("unable to load model 'add_fixed', ")
    assert words in e.value.message


def test_int64_input_and_fp32_output_are_accepted_for_int32_and_fp16(models, cache):
    text = FIXED.replace('name: "a" data_type: TYPE_INT32', 'name: "a" data_type: TYPE_INT64')
    text = text.replace('name: "h" data_type: TYPE_FP16', 'name: "h" data_type: TYPE_FP32')
    m = load(models["add_fixed"], text, cache=cache, auto_complete=False)
    assert m.config.input[0].data_type == "TYPE_INT64"


def test_disabled_auto_complete_only_validates(models, cache):
    m = load(models["add_fixed"], FIXED, cache=cache, auto_complete=False)
    assert m.config.backend == "" and m.config.max_batch_size == 0


def test_unknown_parameter_is_warned_about(models, cache, caplog):
    load(models["add_fixed"], 'parameters { key: "compute_unit" value { string_value: "ALL" } }',
         cache=cache)
    assert "parameter 'compute_unit' is not read by the coreml backend" in caplog.text


def test_a_file_that_is_not_a_core_ml_model_is_refused(tmp_path, cache):
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.mlmodel").write_bytes(b"\x00\xff not a model")
    with pytest.raises(TritonError) as e:
        load(tmp_path / "bad", cache=cache)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "coremltools cannot read the Core ML spec of" in e.value.message


def test_a_compiled_model_needs_a_complete_config(models, tmp_path, cache):
    folder = tmp_path / "compiled"
    (folder / "1" / "model.mlmodelc").mkdir(parents=True)
    with pytest.raises(TritonError, match="is a compiled Core ML model, whose inputs and outputs cannot "
                                          "be read without Core ML"):
        load(folder, cache=cache)
    m = load(folder, 'max_batch_size: 4\ninput [{ name: "x" data_type: TYPE_FP32 dims: [4] }]\n'
                     'output [{ name: "y" data_type: TYPE_FP32 dims: [4] }]', cache=cache)
    assert m.model_file.compiled and m.batch_mode == "list"
    shutil.rmtree(folder)


def test_neural_network_classifier_with_int64_labels(models, cache):
    m = load(models["nn_classifier"], cache=cache)
    assert m.signature.model_type == "neuralNetworkClassifier"
    assert m.signature.classifier.labels == (10, 20, 30)
    outs = {o.name: (o.data_type, o.dims) for o in m.config.output}
    assert outs == {"scores": ("TYPE_FP32", [3]), "label": ("TYPE_INT64", [1])}
    labels = Path(m.config.output_by_name("scores").label_filename).read_text().splitlines()
    assert labels == ["10", "20", "30"]


def test_enumerated_image_sizes_become_variable_dims(models, cache):
    m = load(models["nn_image_sizes"], cache=cache)
    assert _io(m.config)[0] == [("image", "TYPE_UINT8", [-1, -1, 3], "FORMAT_NHWC")]
    assert m.signature.inputs["image"].image.sizes == ((4, 5), (8, 10))
