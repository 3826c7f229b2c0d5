"""Requests -> Core ML inputs and Core ML results -> responses, on real model specs (any OS).

The prediction itself is Core ML's (macOS): these tests stop at the values handed to
predict(), and start again from values of the form Core ML's Python bridge returns
(dicts of numpy arrays, label dictionaries, strings); test_coreml_predict.py runs the
whole path on macOS.
"""

from __future__ import annotations

import numpy as np
import pytest
from coreml_backend_helpers import load, request
from PIL import Image

from triton_backend_coreml import images
from triton_core.errors import ErrorCode, TritonError


def _plan(m, *requests):
    return m.feed_builder().plan(list(requests))


# batching plans ------------------------------------------------------------------------

def test_dimension_mode_concatenates_requests_into_one_call(models, cache):
    m = load(models["relu_range"], cache=cache)
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = -np.ones((1, 4), np.float32)
    plan = _plan(m, request(x=a), request(x=b))
    (call,) = plan.calls
    np.testing.assert_array_equal(call.payload["x"], np.concatenate([a, b]))
    # Core ML's answer: one array for the whole batch; split back per request
    y = np.maximum(call.payload["x"], 0)
    r1, r2 = plan.responses([{"y": y}])
    np.testing.assert_array_equal(r1.output("y").as_numpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(r2.output("y").as_numpy(), np.zeros((1, 4), np.float32))


def test_dimension_mode_cuts_batches_at_the_ranges_upper_bound(models, cache):
    m = load(models["relu_range"], "max_batch_size: 8", cache=cache)
    reqs = [request(x=np.full((3, 4), i, np.float32)) for i in range(4)]  # 12 rows, model takes <= 8
    plan = _plan(m, *reqs)
    assert [c.payload["x"].shape[0] for c in plan.calls] == [8, 4]
    responses = plan.responses([{"y": c.payload["x"]} for c in plan.calls])
    for i, r in enumerate(responses):
        np.testing.assert_array_equal(r.output("y").as_numpy(), np.full((3, 4), i, np.float32))


def test_dimension_mode_cuts_batches_into_enumerated_sizes(models, cache):
    m = load(models["relu_enum"], cache=cache)  # first dims 1, 2, 4
    plan = _plan(m, request(x=np.zeros((3, 4), np.float32)), request(x=np.ones((4, 4), np.float32)))
    assert [c.payload["x"].shape[0] for c in plan.calls] == [4, 2, 1]


def test_a_shape_outside_the_models_shapes_fails_only_its_request(models, cache):
    m = load(models["relu_enum"], cache=cache)
    good = request(x=np.ones((1, 4), np.float32))
    bad = request(x=np.ones((1, 5), np.float32))
    plan = _plan(m, good, bad)
    assert len(plan.calls) == 1
    ok, err = plan.responses([{"y": np.ones((1, 4), np.float32)}])
    assert ok.error is None and err.error.code is ErrorCode.INVALID_ARG
    assert "input 'x' (after the batch dimension): shape [5] is not one of [4]" in err.error.message


def test_range_check_names_the_dimension(models, cache):
    m = load(models["relu_range"], 'max_batch_size: 0\ninput [{ name: "x" data_type: TYPE_FP32 '
             'dims: [-1, 4] }]\noutput [{ name: "y" data_type: TYPE_FP32 dims: [-1, 4] }]', cache=cache)
    (r,) = _plan(m, request(x=np.ones((9, 4), np.float32))).responses([])
    assert r.error.message == ("model 'relu_range': input 'x': dimension 0 is 9, outside 1..8 "
                               "(the model takes [1..8,4])")


def test_list_mode_makes_one_sample_per_row_in_one_batch_prediction(models, cache):
    m = load(models["add_fixed"], "max_batch_size: 4", cache=cache)
    a = np.arange(12, dtype=np.int32).reshape(2, 2, 3)
    f = np.ones((2, 3), np.float16)
    plan = _plan(m, request(a=a, b=a, f=f))
    (call,) = plan.calls
    assert isinstance(call.payload, list) and len(call.payload) == 2
    for row, sample in enumerate(call.payload):
        np.testing.assert_array_equal(sample["a"], a[row])
        assert sample["f"].dtype == np.float16
    # the bridge returns one dict per sample; FP16 outputs may come back as float32
    results = [[{"s": s["a"] + s["b"], "h": (s["f"] * 2).astype(np.float32)} for s in call.payload]]
    (r,) = plan.responses(results)
    np.testing.assert_array_equal(r.output("s").as_numpy(), a * 2)
    h = r.output("h").as_numpy()
    assert h.dtype == np.float16 and h.shape == (2, 3)


def test_none_mode_feeds_the_request_as_sent(models, cache):
    m = load(models["add_fixed"], cache=cache)
    a = np.ones((2, 3), np.int32)
    plan = _plan(m, request(a=a, b=a, f=np.ones(3, np.float16)))
    (call,) = plan.calls
    assert isinstance(call.payload, dict) and call.payload["a"].shape == (2, 3)


def test_int64_is_cast_to_int32_only_when_lossless(models, cache):
    text = ('input [{ name: "a" data_type: TYPE_INT64 dims: [2, 3] }, { name: "b" data_type: TYPE_INT32 '
            'dims: [2, 3] }, { name: "f" data_type: TYPE_FP16 dims: [3] }]')
    m = load(models["add_fixed"], text, cache=cache)
    b = np.ones((2, 3), np.int32)
    f = np.ones(3, np.float16)
    ok = request(a=np.full((2, 3), 7, np.int64), b=b, f=f)
    big = request(a=np.full((2, 3), 2**40, np.int64), b=b, f=f)
    plan = _plan(m, ok, big)
    (call,) = plan.calls
    assert call.payload["a"].dtype == np.int32 and int(call.payload["a"][0, 0]) == 7
    _, err = plan.responses([{"s": np.zeros((2, 3), np.int32), "h": np.zeros(3, np.float16)}])
    assert err.error.code is ErrorCode.INVALID_ARG
    assert "input 'a': INT64 values must fit INT32" in err.error.message


def test_fp16_output_served_as_fp32_when_the_config_says_so(models, cache):
    m = load(models["add_fixed"], 'output [{ name: "h" data_type: TYPE_FP32 dims: [3] }]', cache=cache)
    a = np.ones((2, 3), np.int32)
    plan = _plan(m, request(a=a, b=a, f=np.ones(3, np.float16)))
    (r,) = plan.responses([{"s": a, "h": np.full(3, 2, np.float16)}])
    assert r.output("h").as_numpy().dtype == np.float32


def test_requested_outputs_only(models, cache):
    m = load(models["add_fixed"], cache=cache)
    a = np.ones((2, 3), np.int32)
    plan = _plan(m, request(outputs=["h"], a=a, b=a, f=np.ones(3, np.float16)))
    (r,) = plan.responses([{"s": a, "h": np.ones(3, np.float16)}])
    assert [t.name for t in r.outputs] == ["h"]


def test_a_failed_call_fails_only_its_requests(models, cache):
    m = load(models["add_fixed"], cache=cache)
    a = np.ones((2, 3), np.int32)
    plan = _plan(m, request(a=a, b=a, f=np.ones(3, np.float16)), request(a=a, b=a, f=np.ones(3, np.float16)))
    boom = TritonError.internal("Core ML failed to run model 'add_fixed': RuntimeError: x")
    r1, r2 = plan.responses([boom, {"s": a, "h": np.ones(3, np.float16)}])
    assert r1.error is boom and r2.error is None


# classifier --------------------------------------------------------------------------

def test_classifier_dictionary_becomes_scores_in_label_order(models, cache):
    m = load(models["classifier"], cache=cache)
    plan = _plan(m, request(x=np.array([[0.1, 2.0, 0.3]], np.float32)))
    (r,) = plan.responses([{"classLabel": "dog", "classLabel_probs": {"emu": 0.2, "cat": 0.1, "dog": 0.7}}])
    np.testing.assert_allclose(r.output("classLabel_probs").as_numpy(), [0.1, 0.7, 0.2])
    assert r.output("classLabel").as_numpy().tolist() == [b"dog"]


def test_classification_extension_reads_the_written_labels(models, cache):
    from triton_core.frontends.classification import classify, load_labels

    m = load(models["classifier"], cache=cache)
    plan = _plan(m, request(x=np.zeros((1, 3), np.float32)))
    (r,) = plan.responses([{"classLabel": "dog", "classLabel_probs": {"cat": 0.1, "dog": 0.7, "emu": 0.2}}])
    out = m.config.output_by_name("classLabel_probs")
    labels = load_labels(m.ctx.model_path / out.label_filename)
    top = classify(r.output("classLabel_probs").as_numpy(), 2, labels, batched=False)
    assert top.tolist() == [b"0.700000:1:dog", b"0.200000:2:emu"]


# images ------------------------------------------------------------------------------

def _image(h=4, w=5):
    return (np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3) * 3)


@pytest.mark.parametrize("name", ["image_rgb", "image_bgr"])
def test_rgb_hwc_becomes_an_rgb_pil_image(models, cache, name):
    m = load(models[name], cache=cache)
    img = _image()
    (call,) = _plan(m, request(image=img)).calls
    pil = call.payload["image"]
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (5, 4)
    np.testing.assert_array_equal(np.asarray(pil), img)


def test_bgr_channel_order_parameter_swaps_channels(models, cache):
    m = load(models["image_bgr"], 'parameters { key: "image_channel_order" value { string_value: "BGR" } }',
             cache=cache)
    img = _image()
    (call,) = _plan(m, request(image=img)).calls
    np.testing.assert_array_equal(np.asarray(call.payload["image"]), img[..., ::-1])


def test_nchw_images_are_transposed(models, cache):
    m = load(models["image_rgb"], 'input [{ name: "image" format: FORMAT_NCHW }]', cache=cache)
    img = _image()
    (call,) = _plan(m, request(image=np.ascontiguousarray(img.transpose(2, 0, 1)))).calls
    np.testing.assert_array_equal(np.asarray(call.payload["image"]), img)


def test_grayscale_images(models, cache):
    m = load(models["image_gray"], cache=cache)
    img = np.arange(20, dtype=np.uint8).reshape(4, 5, 1)
    (call,) = _plan(m, request(image=img)).calls
    assert call.payload["image"].mode == "L"
    np.testing.assert_array_equal(np.asarray(call.payload["image"]), img[..., 0])


def test_image_list_batching(models, cache):
    m = load(models["image_rgb"], "max_batch_size: 4", cache=cache)
    batch = np.stack([_image(), _image()[::-1]])
    (call,) = _plan(m, request(image=batch)).calls
    assert [np.asarray(s["image"]).tolist() for s in call.payload] == [b.tolist() for b in batch]


def test_image_errors():
    info = images.ImageInfo("RGB", 4, 5)
    with pytest.raises(TritonError, match="the model's RGB image takes 3 channels, got 1"):
        images.to_hwc("image", np.zeros((4, 5, 1), np.uint8), info, False, "RGB")
    with pytest.raises(TritonError, match="image height 6 is outside 4"):
        images.to_hwc("image", np.zeros((6, 5, 3), np.uint8), info, False, "RGB")
    with pytest.raises(TritonError, match=r"an image is a 3-dimensional tensor \(HWC\)"):
        images.to_hwc("image", np.zeros((4, 5), np.uint8), info, False, "RGB")
    sized = images.ImageInfo("RGB", 4, 5, sizes=((4, 5), (8, 10)))
    assert sized.hw_dims == (-1, -1)
    assert images.to_hwc("image", np.zeros((8, 10, 3), np.uint8), sized, False, "RGB").shape == (8, 10, 3)
    with pytest.raises(TritonError, match=r"image size 6x5 \(HxW\) is not one of 4x5, 8x10"):
        images.to_hwc("image", np.zeros((6, 5, 3), np.uint8), sized, False, "RGB")
    ranged = images.ImageInfo("GRAYSCALE", 4, 5, height_range=(2, 10), width_range=(5, -1))
    assert ranged.dims(False) == (-1, -1, 1)
    with pytest.raises(TritonError, match=r"image width 4 is outside 5\.\."):
        images.to_hwc("image", np.zeros((3, 4, 1), np.uint8), ranged, False, "RGB")
    with pytest.raises(TritonError, match="parameter 'image_channel_order': expected RGB or BGR"):
        images.channel_order("RGBA", "m")


def test_image_outputs_come_back_as_hwc_arrays():
    rgba = Image.fromarray(np.full((2, 3, 4), 9, np.uint8))
    assert images.from_pil(rgba).shape == (2, 3, 3)
    gray = Image.fromarray(np.full((2, 3), 9, np.uint8))
    assert images.from_pil(gray).shape == (2, 3, 1)


# states ------------------------------------------------------------------------------

def test_stateful_calls_carry_the_implicit_state(models, cache):
    m = load(models["stateful"], cache=cache)
    x = np.ones((1, 4), np.float16)
    acc = np.full((1, 4), 3, np.float16)
    plan = _plan(m, request(x=x, acc=acc))
    (call,) = plan.calls
    assert call.payload.keys() == {"x"}
    np.testing.assert_array_equal(call.states[0]["acc"], acc)
    (r,) = plan.responses([({"y": acc + x}, {"acc": acc + x})])
    assert [t.name for t in r.outputs] == ["y", "acc_out"]
    np.testing.assert_array_equal(r.output("acc_out").as_numpy(), acc + x)


def test_stateful_model_without_its_state_input_is_an_error(models, cache):
    m = load(models["stateful"], cache=cache)
    (r,) = _plan(m, request(x=np.ones((1, 4), np.float16))).responses([])
    assert "the state 'acc' is missing" in r.error.message


def test_int64_labelled_classifier_results(models, cache):
    m = load(models["nn_classifier"], cache=cache)
    plan = _plan(m, request(x=np.zeros(3, np.float64)))
    (r,) = plan.responses([{"label": 20, "scores": {10: 0.25, 20: 0.5, 30: 0.25}}])
    assert r.output("label").as_numpy().tolist() == [20]
    np.testing.assert_allclose(r.output("scores").as_numpy(), [0.25, 0.5, 0.25])


def test_enumerated_image_sizes_are_checked_per_request(models, cache):
    m = load(models["nn_image_sizes"], cache=cache)
    ok = request(image=np.zeros((8, 10, 3), np.uint8))
    bad = request(image=np.zeros((6, 10, 3), np.uint8))
    plan = _plan(m, ok, bad)
    (call,) = plan.calls
    assert call.payload["image"].size == (10, 8)
    assert plan.errors[1].message == ("model 'nn_image_sizes': input 'image': image size 6x10 (HxW) is "
                                      "not one of 4x5, 8x10")
