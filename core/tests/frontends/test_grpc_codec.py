"""Unit tests of the gRPC codec and the classification helper."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from triton_core.errors import ErrorCode, TritonError
from triton_core.frontends.classification import classify
from triton_core.frontends.grpc import codec
from triton_core.request import InferenceResponse
from triton_core.tensor import Tensor


def test_params_round_trip():
    msg = pb.ModelInferResponse()
    values = {"b": True, "i": -3, "u": 2**63 + 5, "d": 0.25, "s": "x"}
    codec.fill_params(msg.parameters, values)
    assert msg.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert msg.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert codec.params_to_dict(msg.parameters) == values


def test_decode_request_fields():
    req = pb.ModelInferRequest(model_name="m", model_version="2", id="r1")
    t = req.inputs.add(name="X", datatype="FP32", shape=[2])
    req.raw_input_contents.append(np.array([1, 2], dtype=np.float32).tobytes())
    req.parameters["sequence_id"].string_param = "abc"
    req.parameters["sequence_end"].bool_param = True
    req.parameters["timeout"].int64_param = 100
    req.parameters["user"].string_param = "u"
    o = req.outputs.add(name="Y")
    o.parameters["classification"].int64_param = 3
    r = codec.decode_request(req)
    assert (r.model_name, r.model_version, r.id) == ("m", 2, "r1")
    assert r.correlation_id == "abc" and r.flags == codec.SEQUENCE_END and r.timeout_us == 100
    assert r.parameters == {"user": "u"}
    assert r.inputs["X"].as_numpy().tolist() == [1.0, 2.0]
    assert r.outputs[0].classification == 3
    assert t.name == "X"


@pytest.mark.parametrize(("text", "words"), [
    ("wrong_specification",
     "failed to get model version from specified version string 'wrong_specification'"),
    ("-3", "invalid model version specified '-3'"),
])
def test_bad_model_version_in_triton_words(text, words):
    # Triton's grpc_explicit_int8_content_client.py example matches on these words
    req = pb.ModelInferRequest(model_name="m", model_version=text)
    with pytest.raises(TritonError, match=words) as e:
        codec.decode_request(req)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert codec.decode_request(pb.ModelInferRequest(model_name="m", model_version="-1")
                                ).model_version is None


def test_typed_contents_types():
    req = pb.ModelInferRequest(model_name="m")
    t = req.inputs.add(name="B", datatype="BOOL", shape=[2])
    t.contents.bool_contents.extend([True, False])
    t = req.inputs.add(name="U", datatype="UINT8", shape=[1, 2])
    t.contents.uint_contents.extend([1, 255])
    r = codec.decode_request(req)
    assert r.inputs["B"].as_numpy().tolist() == [True, False]
    assert r.inputs["U"].as_numpy().dtype == np.uint8
    bad = pb.ModelInferRequest(model_name="m")
    t = bad.inputs.add(name="U", datatype="UINT8", shape=[1])
    t.contents.uint_contents.append(256)
    with pytest.raises(TritonError):
        codec.decode_request(bad)
    fp16 = pb.ModelInferRequest(model_name="m")
    t = fp16.inputs.add(name="H", datatype="FP16", shape=[1])
    t.contents.fp32_contents.append(1.0)
    with pytest.raises(TritonError, match="raw_input_contents"):
        codec.decode_request(fp16)


def test_encode_response_raw():
    resp = InferenceResponse("m", 1, "id", [Tensor.from_numpy("A", np.arange(4, dtype=np.int64)),
                                            Tensor.from_numpy("S", np.array([b"ab"], dtype=object))])
    msg = codec.encode_response(resp)
    assert msg.model_version == "1" and msg.id == "id"
    assert np.frombuffer(msg.raw_output_contents[0], dtype=np.int64).tolist() == [0, 1, 2, 3]
    assert msg.raw_output_contents[1] == b"\x02\x00\x00\x00ab"
    assert [o.datatype for o in msg.outputs] == ["INT64", "BYTES"]


def test_classify():
    out = classify(np.array([1, 5, 3], dtype=np.int32), 2, None, batched=False)
    assert out.tolist() == [b"5:1", b"3:2"]
    out = classify(np.array([[0.5, 0.5]], dtype=np.float32), 5, ["a", "b"], batched=True)
    assert out.tolist() == [[b"0.500000:0:a", b"0.500000:1:b"]]
    with pytest.raises(TritonError):
        classify(np.array([b"x"], dtype=object), 1, None, batched=False)


def test_classify_bounds_the_elements_of_a_batch_entry():
    # Triton's bound and words (test_classification_output_tensor_too_large)
    from triton_core.frontends.classification import MAX_CLASSIFICATION_ELEMENTS

    n = MAX_CLASSIFICATION_ELEMENTS
    with pytest.raises(TritonError, match="^classification output tensor too large$") as e:
        classify(np.ones((1, n + 1), np.float32), 1, None, batched=True)
    assert e.value.code is ErrorCode.INVALID_ARG
    # the bound is per batch entry: two entries of n elements each are classified
    out = classify(np.ones((2, n), np.float32), 1, None, batched=True)
    assert out.shape == (2, 1)
