import json

import pytest

from triton_core import ErrorCode, TritonError
from triton_core.config import config_to_json_dict, parse_config_json, parse_pbtxt

SIMPLE = """
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { specific: { versions: [1, 3] } }
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [16] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] label_filename: "labels.txt" }]
instance_group [{ kind: KIND_CPU count: 2 }]
dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 100 }
parameters { key: "k" value { string_value: "v" } }
model_transaction_policy { decoupled: true }
"""


def test_pbtxt_fields():
    c = parse_pbtxt(SIMPLE)
    assert c.name == "simple" and c.max_batch_size == 8
    assert c.version_policy.kind() == "specific"
    assert c.version_policy.specific_versions() == [1, 3]
    assert c.input[0].dims == [16] and c.input[0].datatype.value == "INT32"
    assert c.output[0].label_filename == "labels.txt"
    assert c.instance_group[0].count == 2
    assert c.dynamic_batching.preferred_batch_size == [4, 8]
    assert c.dynamic_batching.max_queue_delay_microseconds == 100
    assert c.parameter("k") == "v"
    assert c.decoupled


def test_json_output_has_numbers_for_64_bit_ints():
    d = config_to_json_dict(parse_pbtxt(SIMPLE))
    assert d["input"][0]["dims"] == [16]
    assert d["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert d["version_policy"]["specific"]["versions"] == [1, 3]
    json.dumps(d)


def test_json_round_trip():
    d = config_to_json_dict(parse_pbtxt(SIMPLE))
    again = parse_config_json(json.dumps(d))
    assert config_to_json_dict(again) == d


@pytest.mark.parametrize(
    "text, field",
    [
        ('name: "x" max_batch_size: -1', "max_batch_size"),
        ('input [{ name: "a" data_type: TYPE_INT32 dims: [-2] }]', "input.0.dims"),
        ('instance_group [{ count: -1 }]', "instance_group.0.count"),
        ('nme: "x"', "nme"),
        ('input [{ name: "a" data_type: TYPE_NOPE }]', "TYPE_NOPE"),
    ],
)
def test_invalid_config_names_the_field(text, field):
    with pytest.raises(TritonError) as e:
        parse_pbtxt(text, "models/x/config.pbtxt")
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "models/x/config.pbtxt" in e.value.message
    assert field in e.value.message


def test_config_json_errors():
    with pytest.raises(TritonError, match="not valid JSON"):
        parse_config_json("{")
    with pytest.raises(TritonError, match="JSON object"):
        parse_config_json("[1]")
