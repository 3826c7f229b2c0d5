"""TorchScript models through the backend object: Triton's naming rules, dtypes, batching,
nested outputs, and the errors bad models and bad inputs get."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional  # noqa: UP035 - TorchScript reads typing's generics

import numpy as np
import pytest
import torch
from torch_backend_helpers import instance, load, request, run, save_script, save_traced, tensor_request

from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.tensor import Tensor

# torch 2.13 marks torch.jit deprecated; TorchScript is what Triton's repositories hold
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class AddSub(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return a + b, a - b


class Strings(torch.nn.Module):
    def forward(self, text: List[str], n: torch.Tensor):  # noqa: UP006
        return [s.upper() for s in text], n * 2


class DictIn(torch.nn.Module):
    def forward(self, inputs: Dict[str, torch.Tensor]):  # noqa: UP006
        return inputs["x"] * 10 + inputs["y"]


class DictOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # noqa: UP006
        return {"double": x * 2, "neg": -x}


class Nested(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return {"pair": [x + 1, x + 2], "single": [x * 3]}, x.sum(0, keepdim=True)


class BatchSize(torch.nn.Module):
    """Echoes x and reports the batch the model saw, to show requests ran as one batch."""

    def forward(self, x: torch.Tensor):
        return x, torch.full([x.shape[0], 1], x.shape[0], dtype=torch.int64)


class WithDefault(torch.nn.Module):
    def forward(self, x: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
        return x * scale


class OptionalBias(torch.nn.Module):
    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None,  # noqa: UP045
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        y = x if bias is None else x + bias
        return y if scale is None else y * scale


class TwoMethods(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def triple(self, x: torch.Tensor) -> torch.Tensor:
        return x * 3


class Fails(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() < 0):
            raise RuntimeError("negative input")
        return x


class Bfloat(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class Wrong(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64)


class Scalar(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


ADD_SUB_IO = """
input [{ name: "%s" data_type: TYPE_FP32 dims: [4] }, { name: "%s" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "%s" data_type: TYPE_FP32 dims: [4] }, { name: "%s" data_type: TYPE_FP32 dims: [4] }]
"""


def add_sub_config(i0: str, i1: str, o0: str = "OUT__0", o1: str = "OUT__1", mbs: int = 8) -> str:
    return f"max_batch_size: {mbs}\n" + ADD_SUB_IO % (i0, i1, o0, o1)


A = np.arange(8, dtype=np.float32).reshape(2, 4)
B = np.ones((2, 4), np.float32)


@pytest.mark.parametrize(("names", "b_first"), [
    (("a", "b"), False),                    # forward() argument names
    (("b", "a"), True),                     # by name, whatever the config order
    (("IN__0", "IN__1"), False),            # <name>__<index>
    (("IN__1", "IN__0"), True),             # the index decides, not the config order
    (("first", "second"), False),           # neither: config order
], ids=["args", "args-reordered", "index", "index-reordered", "order"])
def test_input_naming_conventions(repo, names, b_first):
    m = load(save_script(repo, "addsub", AddSub(), add_sub_config(*names)))
    inst = instance(m)
    x, y = (B, A) if b_first else (A, B)
    (resp,), _ = run(inst, request("addsub", **{names[0]: x, names[1]: y}))
    assert resp.error is None, resp.error
    np.testing.assert_array_equal(resp.output("OUT__0").as_numpy(), A + B)
    np.testing.assert_array_equal(resp.output("OUT__1").as_numpy(), A - B)


def test_config_order_fallback_warns(repo, caplog):
    with caplog.at_level(logging.WARNING, "triton_backend_torch"):
        instance(load(save_script(repo, "addsub", AddSub(), add_sub_config("first", "second", "s", "d"))))
    text = caplog.text
    assert "Falling back to enforcing strict ordering" in text and "'first'" in text
    assert "do not follow the <name>__<index> naming convention" in text


def test_output_index_names_pick_tuple_elements(repo):
    m = load(save_script(repo, "addsub", AddSub(), add_sub_config("a", "b", "DIFF__1", "SUM__0")))
    (resp,), _ = run(instance(m), request("addsub", a=A, b=B))
    np.testing.assert_array_equal(resp.output("SUM__0").as_numpy(), A + B)
    np.testing.assert_array_equal(resp.output("DIFF__1").as_numpy(), A - B)


def test_traced_module_uses_its_forward_argument_name(repo):
    lin = torch.nn.Linear(4, 2)
    folder = save_traced(repo, "lin", lin, (torch.ones(1, 4),), """
max_batch_size: 4
input [{ name: "input" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [2] }]""")
    (resp,), _ = run(instance(load(folder)), request("lin", input=A))
    np.testing.assert_allclose(resp.output("OUTPUT__0").as_numpy(), lin(torch.from_numpy(A)).detach().numpy(),
                               rtol=1e-6)


def test_dict_input_takes_config_names_as_keys(repo):
    folder = save_script(repo, "d", DictIn(), """
max_batch_size: 2
input [{ name: "y" data_type: TYPE_FP32 dims: [4] }, { name: "x" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUT__0" data_type: TYPE_FP32 dims: [4] }]""")
    (resp,), _ = run(instance(load(folder)), request("d", x=A, y=B))
    np.testing.assert_array_equal(resp.output("OUT__0").as_numpy(), A * 10 + B)


def test_argument_with_default_may_be_left_out(repo):
    folder = save_script(repo, "w", WithDefault(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]""")
    (resp,), _ = run(instance(load(folder)), request("w", x=np.array([1, 2], np.float32)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [3, 6])


def test_optional_input_left_out_of_a_request_takes_the_default(repo):
    folder = save_script(repo, "o", OptionalBias(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] },
       { name: "bias" data_type: TYPE_FP32 dims: [2] optional: true },
       { name: "scale" data_type: TYPE_FP32 dims: [2] optional: true }]
output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]""")
    inst = instance(load(folder))
    x, b, k = (np.array(v, np.float32) for v in ([1, 2], [10, 20], [3, 3]))
    (both, none, middle_absent), _ = run(inst, request("o", x=x, bias=b, scale=k), request("o", x=x),
                                         request("o", x=x, scale=k))
    np.testing.assert_array_equal(both.output("y").as_numpy(), (x + b) * k)
    np.testing.assert_array_equal(none.output("y").as_numpy(), x)
    np.testing.assert_array_equal(middle_absent.output("y").as_numpy(), x * k)


def test_strings_in_and_out_as_list_of_str(repo):
    folder = save_script(repo, "s", Strings(), """
max_batch_size: 4
input [{ name: "text" data_type: TYPE_STRING dims: [1] reshape: { shape: [] } },
       { name: "n" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "UPPER__0" data_type: TYPE_STRING dims: [1] reshape: { shape: [] } },
        { name: "TWICE__1" data_type: TYPE_INT32 dims: [1] }]""")
    inst = instance(load(folder))
    r1 = request("s", text=np.array([[b"ab"], ["\u00e9t\u00e9".encode()]], dtype=object),
                 n=np.array([[1], [2]], np.int32))
    r2 = request("s", text=np.array([[b"z"]], dtype=object), n=np.array([[5]], np.int32))
    (a, b), _ = run(inst, r1, r2)
    # TorchScript's upper() maps ASCII only: the UTF-8 text travels through unchanged
    assert a.output("UPPER__0").as_numpy().tolist() == [[b"AB"], ["\u00e9T\u00e9".encode()]]
    assert b.output("UPPER__0").as_numpy().tolist() == [[b"Z"]]
    np.testing.assert_array_equal(b.output("TWICE__1").as_numpy(), [[10]])


def test_non_utf8_string_is_refused_and_the_others_run(repo):
    folder = save_script(repo, "s", Strings(), """
max_batch_size: 4
input [{ name: "text" data_type: TYPE_STRING dims: [1] }, { name: "n" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "UPPER__0" data_type: TYPE_STRING dims: [1] },
        { name: "TWICE__1" data_type: TYPE_INT32 dims: [1] }]""")
    inst = instance(load(folder))
    bad = request("s", text=np.array([[b"\xff\xfe"]], dtype=object), n=np.array([[1]], np.int32))
    good = request("s", text=np.array([[b"ok"]], dtype=object), n=np.array([[1]], np.int32))
    (rb, rg), _ = run(inst, bad, good)
    assert rb.error is not None and rb.error.code is ErrorCode.INVALID_ARG
    assert "input 'text'" in rb.error.message and "UTF-8" in rb.error.message
    assert rg.error is None and rg.output("UPPER__0").as_numpy().tolist() == [[b"OK"]]


def test_string_argument_with_a_numeric_config_fails_the_load(repo):
    folder = save_script(repo, "s", Strings(), """
input [{ name: "text" data_type: TYPE_FP32 dims: [1] }, { name: "n" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "A__0" data_type: TYPE_STRING dims: [1] },
        { name: "B__1" data_type: TYPE_INT32 dims: [1] }]""")
    with pytest.raises(TritonError) as e:
        instance(load(folder))
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "configuration expects datatype TYPE_FP32 for input 'text'" in e.value.message
    assert "provides TYPE_STRING" in e.value.message


DTYPES = [
    (DataType.BOOL, np.array([[True, False]])),
    (DataType.UINT8, np.array([[0, 255]], np.uint8)),
    (DataType.UINT16, np.array([[0, 65535]], np.uint16)),
    (DataType.UINT32, np.array([[0, 2**32 - 1]], np.uint32)),
    (DataType.UINT64, np.array([[0, 2**64 - 1]], np.uint64)),
    (DataType.INT8, np.array([[-128, 127]], np.int8)),
    (DataType.INT16, np.array([[-5, 5]], np.int16)),
    (DataType.INT32, np.array([[-5, 2**31 - 1]], np.int32)),
    (DataType.INT64, np.array([[-5, 2**63 - 1]], np.int64)),
    (DataType.FP16, np.array([[-1.5, 65504]], np.float16)),
    (DataType.FP32, np.array([[-1.5, 3.25]], np.float32)),
    (DataType.FP64, np.array([[-1.5, 1e300]], np.float64)),
    (DataType.BF16, np.array([[0x3F80, 0xC000]], np.uint16)),  # 1.0, -2.0 as raw bfloat16
]


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@pytest.fixture(scope="module")
def identity_file(tmp_path_factory):
    folder = save_script(tmp_path_factory.mktemp("id"), "identity", Identity())
    return folder / "1" / "model.pt"


@pytest.mark.parametrize(("dt", "data"), DTYPES, ids=[d[0].value for d in DTYPES])
def test_identity_every_dtype(repo, identity_file, dt, data):
    folder = repo / f"id_{dt.value.lower()}"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.pt").write_bytes(identity_file.read_bytes())
    m = load(folder, f"""max_batch_size: 2
input [{{ name: "x" data_type: {dt.config_name} dims: [-1] }}]
output [{{ name: "y" data_type: {dt.config_name} dims: [-1] }}]""")
    (resp,), timer = run(instance(m), tensor_request("m", x=Tensor.from_numpy("x", data, dt)))
    assert resp.error is None, resp.error
    out = resp.output("y")
    assert out.datatype is dt and list(out.shape) == [1, 2]
    np.testing.assert_array_equal(out.as_numpy(), data)
    assert timer.compute_start_ns > 0 and timer.compute_end_ns >= timer.compute_start_ns


def test_bf16_arithmetic(repo):
    folder = save_script(repo, "bf", Bfloat(), """
input [{ name: "x" data_type: TYPE_BF16 dims: [2] }]
output [{ name: "y" data_type: TYPE_BF16 dims: [2] }]""")
    x = np.array([0x3F80, 0x4000], np.uint16)  # 1, 2
    (resp,), _ = run(instance(load(folder)), tensor_request("bf", x=Tensor.from_numpy("x", x, DataType.BF16)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [0x4000, 0x4080])  # 2, 4


def test_output_dtype_differing_from_config_gets_tritons_words(repo):
    folder = save_script(repo, "w", Wrong(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]""")
    inst = instance(load(folder))
    (resp,), _ = run(inst, request("w", x=np.ones(2, np.float32)))
    assert resp.error.code is ErrorCode.INVALID_ARG
    assert resp.error.message == ("configuration expects datatype TYPE_FP32 for output 'y', "
                                  "model provides TYPE_FP64")


def test_scalar_output_is_refused(repo):
    folder = save_script(repo, "s", Scalar(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]""")
    (resp,), _ = run(instance(load(folder)), request("s", x=np.ones(2, np.float32)))
    assert resp.error.message == "output 'y' is a scalar which is not supported."


def test_output_index_past_the_results(repo):
    folder = save_script(repo, "addsub", AddSub(), add_sub_config("a", "b", "OUT__0", "OUT__5"))
    (resp,), _ = run(instance(load(folder)), request("addsub", a=A, b=B))
    assert resp.error.code is ErrorCode.INVALID_ARG
    assert ("The output OUT__5 in the model configuration refers to an output index which doesn't exist. "
            "This model has 2 outputs") == resp.error.message


def test_requests_run_as_one_batch_and_split_back(repo):
    folder = save_script(repo, "bs", BatchSize(), """
max_batch_size: 8
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y__0" data_type: TYPE_FP32 dims: [2] },
        { name: "seen__1" data_type: TYPE_INT64 dims: [1] }]""")
    inst = instance(load(folder))
    xs = [np.full((n, 2), n, np.float32) for n in (1, 3, 2)]
    responses, _ = run(inst, *[request("bs", x=x) for x in xs])
    for x, resp in zip(xs, responses, strict=True):
        np.testing.assert_array_equal(resp.output("y__0").as_numpy(), x)
        np.testing.assert_array_equal(resp.output("seen__1").as_numpy(), np.full((len(x), 1), 6))


def test_requested_outputs_only(repo):
    m = load(save_script(repo, "addsub", AddSub(), add_sub_config("a", "b")))
    (resp,), _ = run(instance(m), request("addsub", outputs=["OUT__1"], a=A, b=B))
    assert [o.name for o in resp.outputs] == ["OUT__1"]


def test_dict_output_named_by_key(repo):
    folder = save_script(repo, "d", DictOut(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "neg" data_type: TYPE_FP32 dims: [2] }, { name: "double" data_type: TYPE_FP32 dims: [2] }]""")
    (resp,), _ = run(instance(load(folder)), request("d", x=np.array([1, 2], np.float32)))
    np.testing.assert_array_equal(resp.output("double").as_numpy(), [2, 4])
    np.testing.assert_array_equal(resp.output("neg").as_numpy(), [-1, -2])


def test_dict_output_with_an_unknown_key_names_the_keys(repo):
    folder = save_script(repo, "d", DictOut(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "triple" data_type: TYPE_FP32 dims: [2] }]""")
    (resp,), _ = run(instance(load(folder)), request("d", x=np.array([1, 2], np.float32)))
    assert resp.error.code is ErrorCode.INVALID_ARG
    assert "without key 'triple'" in resp.error.message and "double, neg" in resp.error.message


def test_nested_outputs_by_path_and_by_leaf_index(repo):
    folder = save_script(repo, "n", Nested(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "RESULT[0][pair][1]" data_type: TYPE_FP32 dims: [2] },
        { name: "RESULT[0][single][0]" data_type: TYPE_FP32 dims: [2] },
        { name: "RESULT[1]" data_type: TYPE_FP32 dims: [1] }]""")
    x = np.array([1, 2], np.float32)
    (resp,), _ = run(instance(load(folder)), request("n", x=x))
    assert resp.error is None, resp.error
    np.testing.assert_array_equal(resp.output("RESULT[0][pair][1]").as_numpy(), x + 2)
    np.testing.assert_array_equal(resp.output("RESULT[0][single][0]").as_numpy(), x * 3)
    np.testing.assert_array_equal(resp.output("RESULT[1]").as_numpy(), [3])
    folder = save_script(repo, "n2", Nested(), """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "p1__1" data_type: TYPE_FP32 dims: [2] }, { name: "s__3" data_type: TYPE_FP32 dims: [1] }]""")
    (resp,), _ = run(instance(load(folder)), request("n2", x=x))
    np.testing.assert_array_equal(resp.output("p1__1").as_numpy(), x + 2)
    np.testing.assert_array_equal(resp.output("s__3").as_numpy(), [3])


def test_module_method_name_calls_another_method(repo):
    io = """
input [{ name: "x" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]"""
    method = '\nparameters { key: "MODULE_METHOD_NAME" value { string_value: "%s" } }'
    folder = save_script(repo, "t", TwoMethods(), io + method % "triple")
    (resp,), _ = run(instance(load(folder)), request("t", x=np.array([1, 2], np.float32)))
    np.testing.assert_array_equal(resp.output("y").as_numpy(), [3, 6])
    (repo / "t" / "config.pbtxt").write_text(io + method % "quadruple")
    with pytest.raises(TritonError) as e:
        instance(load(repo / "t"))
    assert "no method 'quadruple'" in e.value.message and "forward, triple" in e.value.message


def test_execute_failure_fails_that_request_only(repo):
    folder = save_script(repo, "f", Fails(), """
max_batch_size: 4
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]""")
    inst = instance(load(folder))
    (bad, good), _ = run(inst, request("f", x=np.array([[-5]], np.float32)),
                         request("f", x=np.array([[2]], np.float32)))
    assert bad.error.code is ErrorCode.INTERNAL
    assert bad.error.message.startswith("PyTorch execute failure: ") and "negative input" in bad.error.message
    np.testing.assert_array_equal(good.output("y").as_numpy(), [[2]])
    (again,), _ = run(inst, request("f", x=np.array([[1]], np.float32)))
    assert again.error is None


def test_input_count_mismatch_gets_tritons_words(repo):
    folder = save_script(repo, "a", AddSub(), """
input [{ name: "a" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "o" data_type: TYPE_FP32 dims: [4] }]""")
    with pytest.raises(TritonError) as e:
        instance(load(folder))
    assert e.value.message == "unable to load model 'a', configuration expects 1 inputs, model provides 2"


def test_torchscript_without_config_names_what_is_missing(repo):
    folder = save_script(repo, "a", AddSub())
    with pytest.raises(TritonError) as e:
        load(folder)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "needs its input and output in config.pbtxt" in e.value.message


def test_missing_and_corrupt_model_files(repo):
    (repo / "none" / "1").mkdir(parents=True)
    with pytest.raises(TritonError) as e:
        load(repo / "none", add_sub_config("a", "b"))
    assert e.value.code is ErrorCode.UNAVAILABLE and "unable to find" in e.value.message
    (repo / "junk" / "1").mkdir(parents=True)
    (repo / "junk" / "1" / "model.pt").write_bytes(b"not a zip at all")
    with pytest.raises(TritonError) as e:
        load(repo / "junk", add_sub_config("a", "b"))
    assert "is not a PyTorch archive" in e.value.message


def test_kind_model_leaves_placement_to_the_model(repo):
    m = load(save_script(repo, "addsub", AddSub(), add_sub_config("a", "b")))
    inst = instance(m, kind="KIND_MODEL")
    assert inst.placement.device is None
    (resp,), _ = run(inst, request("addsub", a=A, b=B))
    np.testing.assert_array_equal(resp.output("OUT__0").as_numpy(), A + B)


def test_kind_gpu_without_a_gpu_says_why(repo):
    from triton_backend_torch.devices import gpu_reason

    if gpu_reason() is None:
        pytest.skip("a GPU is usable here: the unavailable path cannot be shown")
    m = load(save_script(repo, "addsub", AddSub(), add_sub_config("a", "b")))
    with pytest.raises(TritonError) as e:
        instance(m, kind="KIND_GPU")
    assert e.value.code is ErrorCode.UNAVAILABLE
    assert "KIND_GPU instance cannot be created" in e.value.message
