"""Ragged inputs, batch inputs and batch outputs: the tensors of Triton's kinds (its own
examples from model_config.proto and ragged_batching.md), and its load-time checks in its words."""

from __future__ import annotations

import numpy as np
import pytest

from triton_core import batch_io
from triton_core.config import parse_pbtxt
from triton_core.errors import ErrorCode, TritonError
from triton_core.gather import gather_input
from triton_core.models.defaults import check_config
from triton_core.request import InferenceRequest
from triton_core.tensor import Tensor

HEAD = """
name: "m"
max_batch_size: 8
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true },
       { name: "OTHER" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] }]
"""


def _config(extra: str):
    return parse_pbtxt(HEAD + extra)


def _request(shape, value: float = 0.0, name: str = "INPUT") -> InferenceRequest:
    arr = np.full(shape, value, np.float32)
    return InferenceRequest(model_name="m", inputs={name: Tensor.from_numpy(name, arr)})


def _batch_input(kind: str, datatype: str = "TYPE_FP32") -> str:
    return (f'batch_input [{{ kind: {kind} target_name: "B" data_type: {datatype} '
            'source_input: "INPUT" }]')


def _made(kind: str, shapes, datatype: str = "TYPE_FP32") -> np.ndarray:
    cfg = _config(_batch_input(kind, datatype))
    return batch_io.make_batch_inputs([_request(s) for s in shapes], cfg)["B"]


def test_ragged_inputs_are_flattened_and_concatenated_in_request_order():
    requests = [_request((1, 3), 3), _request((1, 4), 4), _request((1, 5), 5)]
    got = gather_input(requests, "INPUT", ragged=True)
    assert got.shape == (12,)
    assert got.tolist() == [3] * 3 + [4] * 4 + [5] * 5
    assert batch_io.ragged_inputs(_config("")) == frozenset({"INPUT"})


def test_ragged_batching_guide_example_accumulated_element_count():
    # ragged_batching.md: requests [1, 3], [1, 4], [1, 5] -> INDEX [3, 7, 12]
    got = _made("BATCH_ACCUMULATED_ELEMENT_COUNT", [(1, 3), (1, 4), (1, 5)])
    assert got.dtype == np.float32 and got.tolist() == [3, 7, 12]


@pytest.mark.parametrize(("kind", "expected"), [
    ("BATCH_ELEMENT_COUNT", [2, 4, 1, 3]),
    ("BATCH_ACCUMULATED_ELEMENT_COUNT", [2, 6, 7, 10]),
    ("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", [0, 2, 6, 7, 10]),
])
def test_element_counts(kind, expected):
    got = _made(kind, [(1, 2), (1, 4), (1, 1), (1, 3)], "TYPE_INT32")
    assert got.dtype == np.int32 and got.tolist() == expected


def test_an_element_count_includes_the_batch_dimension():
    assert _made("BATCH_ELEMENT_COUNT", [(2, 3), (1, 0)]).tolist() == [6, 0]


def test_max_element_count_is_the_shape():
    got = _made("BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", [(1, 2), (1, 4), (1, 1)])
    assert got.shape == (4,)


def test_item_shape_proto_example():
    # model_config.proto: a batch-2 input [3, 1] and a batch-1 input [2, 2]
    cfg = parse_pbtxt(HEAD.replace("dims: [ -1 ] allow", "dims: [ -1, -1 ] allow")
                      + _batch_input("BATCH_ITEM_SHAPE"))
    requests = [_request((2, 3, 1)), _request((1, 2, 2))]
    got = batch_io.make_batch_inputs(requests, cfg)["B"]
    assert got.shape == (3, 2) and got.tolist() == [[3, 1], [3, 1], [2, 2]]
    cfg.batch_input[0].kind = "BATCH_ITEM_SHAPE_FLATTEN"
    flat = batch_io.make_batch_inputs(requests, cfg)["B"]
    assert flat.shape == (6,) and flat.tolist() == [3, 1, 3, 1, 2, 2]


def test_item_shape_without_batching_is_the_whole_shape_once():
    cfg = parse_pbtxt(HEAD.replace("max_batch_size: 8", "max_batch_size: 0")
                      + _batch_input("BATCH_ITEM_SHAPE", "TYPE_INT32"))
    got = batch_io.make_batch_inputs([_request((5,))], cfg)["B"]
    assert got.tolist() == [[5]]


def test_every_target_name_gets_the_tensor():
    cfg = _config('batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: ["X", "Y"] '
                  'data_type: TYPE_INT32 source_input: "INPUT" }]')
    made = batch_io.make_batch_inputs([_request((1, 2))], cfg)
    assert sorted(made) == ["X", "Y"] and made["X"].tolist() == made["Y"].tolist() == [2]
    assert batch_io.batch_input_datatypes(cfg) == {"X": batch_io.DataType.INT32,
                                                  "Y": batch_io.DataType.INT32}


def test_a_missing_optional_source_is_a_clear_error():
    cfg = _config(_batch_input("BATCH_ELEMENT_COUNT"))
    other = _request((1, 2), name="OTHER")
    with pytest.raises(TritonError) as e:
        batch_io.make_batch_inputs([other], cfg)
    assert e.value.code is ErrorCode.INVALID_ARG and "'INPUT'" in e.value.message


def test_batch_output_scatters_by_the_source_input_shape():
    cfg = _config('batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "OUTPUT" '
                  'source_input: "INPUT" }]')
    rule = batch_io.batch_output_scatters(cfg)["OUTPUT"]
    requests = [_request((1, 2)), _request((2, 3)), _request((1, 0))]
    parts = rule.scatter(np.arange(8, dtype=np.float32), requests)
    assert [p.shape for p in parts] == [(1, 2), (2, 3), (1, 0)]
    assert parts[0].tolist() == [[0, 1]] and parts[1].tolist() == [[2, 3, 4], [5, 6, 7]]
    with pytest.raises(TritonError) as e:
        rule.scatter(np.arange(7, dtype=np.float32), requests)
    assert e.value.code is ErrorCode.INTERNAL and "7 elements" in e.value.message


# Triton's qa/L0_model_config noautofill_platform cases, with its expected words
@pytest.mark.parametrize(("extra", "expected"), [
    ('batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "B" data_type: TYPE_FP32 }]',
     "batch input kind 'BATCH_ELEMENT_COUNT' expects 1 source input, got 0"),
    ('batch_input [{ kind: BATCH_MAX_ELEMENT_COUNT_AS_SHAPE target_name: "B" data_type: TYPE_FP32 '
     'source_input: ["INPUT", "INPUT"] }]',
     "batch input kind 'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE' expects 1 source input, got 2"),
    ('batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "B" data_type: TYPE_FP32 '
     'source_input: "UNKNOWN_INPUT" }]', "unknown source input name 'UNKNOWN_INPUT'"),
    ('batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "B" data_type: TYPE_INT64 '
     'source_input: "INPUT" }]', "batch input data type must be TYPE_INT32 or TYPE_FP32"),
    ('batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "OTHER" data_type: TYPE_INT32 '
     'source_input: "INPUT" }]', "batch input target 'OTHER' is also an input"),
    ('batch_output [{ target_name: "OUTPUT" kind: BATCH_SCATTER_WITH_INPUT_SHAPE }]',
     "batch output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, got 0"),
    ('batch_output [{ target_name: "OUTPUT" source_input: "UNKNOWN_INPUT" }]',
     "unknown source input name 'UNKNOWN_INPUT'"),
    ('batch_output [{ target_name: "UNKNOWN_OUTPUT" source_input: "INPUT" }]',
     "unknown target output name 'UNKNOWN_OUTPUT'"),
    ('batch_output [{ target_name: ["OUTPUT", "OUTPUT"] source_input: "INPUT" }]',
     "target output name 'OUTPUT' can only be specified once"),
])
def test_bad_batch_io_fails_the_load_in_tritons_words(extra, expected):
    with pytest.raises(TritonError) as e:
        check_config(_config(extra), "m/config.pbtxt")
    assert e.value.code is ErrorCode.INVALID_ARG
    assert expected in e.value.message and e.value.message.endswith(" for m")


def test_good_batch_io_passes_and_round_trips():
    cfg = _config(_batch_input("BATCH_ITEM_SHAPE_FLATTEN")
                  + ' batch_output [{ target_name: "OUTPUT" source_input: "INPUT" }]')
    check_config(cfg, "m/config.pbtxt")
    from triton_core.config import config_to_json_dict

    data = config_to_json_dict(cfg)
    assert data["batch_input"][0]["kind"] == "BATCH_ITEM_SHAPE_FLATTEN"
    assert data["batch_output"][0]["kind"] == "BATCH_SCATTER_WITH_INPUT_SHAPE"
