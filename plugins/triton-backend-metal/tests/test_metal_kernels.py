"""The metal backend: kernel sources, launch expressions and plans on real .metal files (any OS);
the dispatch itself on macOS only."""

from __future__ import annotations

import re
import shutil
import sys

import numpy as np
import pytest

from metal_backend_helpers import KERNELS, instance, load_metal, request, run
from triton_backend_metal import plugin
from triton_backend_metal.metal import expr, msl
from triton_backend_metal.metal.engine import engine_unavailable
from triton_backend_metal.metal.instance import prepare
from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.models.registry import BackendRegistry
from triton_core.testing import make_server

NO_METAL = engine_unavailable()
needs_metal = pytest.mark.skipif(
    NO_METAL is not None,
    reason=f"the kernel dispatch needs Metal through metalcompute: {NO_METAL}",
)

ADD_SUB = """max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] },
       { name: "INPUT1" data_type: TYPE_FP32 dims: [16] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] },
        { name: "OUTPUT1" data_type: TYPE_FP32 dims: [16] }]
"""

SCALE = """max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [-1] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [-1] }]
parameters { key: "kernel" value { string_value: "scale_bias" } }
parameters { key: "scale" value { string_value: "2.5" } }
parameters { key: "bias" value { string_value: "-1" } }
parameters { key: "n" value { string_value: "X.size" } }
parameters { key: "grid" value { string_value: "ceil_div(X.size, 64) * 64" } }
"""


def kernel_model(repo, name: str, source: str, file: str = "model.metal"):
    folder = repo / name / "1"
    folder.mkdir(parents=True)
    shutil.copy(KERNELS / source, folder / file)
    return repo / name


# --------------------------------------------------------------------------- source parsing


def test_signature_of_a_real_kernel():
    (k,) = msl.kernels((KERNELS / "add_sub.metal").read_text())
    assert (k.name, k.line) == ("add_sub", 5)
    assert [(p.name, p.type_name, p.buffer_index, p.line) for p in k.buffers()] == [
        ("a", "float", 0, 5),
        ("b", "float", 1, 6),
        ("sum", "float", 2, 7),
        ("diff", "float", 3, 8),
    ]
    assert [p.writable for p in k.buffers()] == [False, False, True, True]
    assert k.params[-1].attribute == "thread_position_in_grid"


def test_kernels_in_comments_are_not_kernels_and_names_choose():
    src = "// kernel void hidden(device float* x [[buffer(0)]])\n" + (KERNELS / "scale.metal").read_text()
    assert [k.name for k in msl.kernels(src)] == ["scale_bias", "negate"]
    with pytest.raises(msl.MslError, match=r"2 kernels \('scale_bias' \(line 6\), 'negate' \(line 18\)\)"):
        msl.find_kernel(src, None)
    with pytest.raises(msl.MslError, match="no kernel 'nope'"):
        msl.find_kernel(src, "nope")
    k = msl.find_kernel(src, "scale_bias")
    assert [(p.name, p.address_space, p.indirection, p.element) for p in k.buffers()[2:]] == [
        ("scale", "constant", "&", (DataType.FP32, 1)),
        ("bias", "constant", "&", (DataType.FP32, 1)),
        ("n", "constant", "&", (DataType.UINT32, 1)),
    ]


def test_msl_types_map_to_triton_types():
    src = (
        "kernel void k(device half* a [[buffer(0)]], device metal::bfloat* b [[buffer(1)]],\n"
        " device uchar4* c [[buffer(2)]], device packed_float3* d [[buffer(3)]], device S* e [[buffer(4)]])"
    )
    (k,) = msl.kernels(src)
    assert [p.element for p in k.params] == [
        (DataType.FP16, 1),
        (DataType.BF16, 1),
        (DataType.UINT8, 4),
        (DataType.FP32, 3),
        (None, 1),
    ]
    assert k.params[2].line == 2


# --------------------------------------------------------------------------- expressions


def test_expressions_evaluate_over_shapes():
    shapes = {"X": (4, 3, 5), "Y": (7,)}
    assert expr.parse("X.size", ["X"]).evaluate(shapes) == (60,)
    assert expr.parse("ceil_div(X.size, 64) * 64", ["X"]).evaluate(shapes) == (64,)
    assert expr.parse("(X.shape[0], X.shape[-1] * 2, max(Y.shape[0], 3))", ["X", "Y"]).evaluate(shapes) == (
        4,
        10,
        7,
    )
    assert expr.parse("X.ndim - min(1, 2) + 10 // 3 % 2 - -1", ["X"]).evaluate(shapes) == (4,)
    assert expr.parse("X.size / 8", ["X"]).evaluate(shapes) == (7.5,)
    assert expr.parse("(X.size,)", ["X"]).arity == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('true')", "only min, max, ceil_div may be called"),
        ("X.__class__", "'.__class__' is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("X", "'X' alone is not a value"),
        ("Z.size", "unknown tensor 'Z'"),
        ("X.shape[X.size]", "needs a whole number"),
        ("(1, (2, 3))", "a tuple is allowed only as the whole expression"),
        ("(1, 2, 3, 4)", "1 to 3 items"),
        ("2 ** 64", "operator Pow is not allowed"),
        ("'a'", "is not a number"),
        ("1 +", "is not an expression"),
        ("x" * 600, "longer than 500"),
    ],
)
def test_expressions_refuse_what_is_not_arithmetic_over_shapes(text, message):
    with pytest.raises(expr.ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expr.parse(text, ["X"])


def test_evaluation_errors_are_reported():
    with pytest.raises(expr.ExpressionError, match="division by zero"):
        expr.parse("X.size // 0", ["X"]).evaluate({"X": (2,)})
    with pytest.raises(expr.ExpressionError, match="X has 1 dimensions, no shape.3."):
        expr.parse("X.shape[3]", ["X"]).evaluate({"X": (2,)})


# --------------------------------------------------------------------------- load-time checks


@pytest.mark.parametrize(
    "kernel, line, message",
    [
        ("gap", 5, "'y' is bound to [[buffer(2)]] but buffer(1) is missing"),
        ("int_in", 10, "buffer(0) 'x' is 'int' (TYPE_INT32) but configuration input 'X' is TYPE_FP32"),
        ("const_out", 17, "buffer(1) 'y' binds output 'Y' but is not writable"),
        ("no_attr", 23, "parameter 'i' has no attribute"),
        (
            "one_buffer",
            26,
            "kernel 'one_buffer' declares 1 buffers but the configuration binds 1 inputs and 1 outputs",
        ),
        ("vector_const", 32, "buffer(2) 'v' comes after the inputs and outputs, so it is a constant"),
    ],
)
def test_signature_mismatches_name_the_metal_line(repo, kernel, line, message):
    path = kernel_model(repo, "m", "broken.metal")
    pbtxt = f"""input [{{ name: "X" data_type: TYPE_FP32 dims: [4] }}]
    output [{{ name: "Y" data_type: TYPE_FP32 dims: [4] }}]
    parameters {{ key: "kernel" value {{ string_value: "{kernel}" }} }}"""
    with pytest.raises(TritonError) as e:
        load_metal(path, pbtxt)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert f"model.metal:{line}: " in str(e.value)
    assert message in str(e.value)


def test_a_constant_needs_its_parameter_and_a_valid_expression(repo):
    path = kernel_model(repo, "m", "scale.metal")
    with pytest.raises(TritonError, match=r"model.metal:9: constant buffer\(4\) 'n' has no value"):
        load_metal(path, SCALE.replace('parameters { key: "n" value { string_value: "X.size" } }\n', ""))
    with pytest.raises(
        TritonError, match=re.escape("parameter 'n': 'X.size + W.size' reads unknown tensor 'W'")
    ):
        load_metal(path, SCALE.replace('"X.size" }', '"X.size + W.size" }'))
    with pytest.raises(TritonError, match="parameter 'grid': 'open' alone is not a value"):
        load_metal(path, SCALE.replace('"ceil_div(X.size, 64) * 64"', '"open"'))


def test_config_types_and_missing_files(repo):
    path = kernel_model(repo, "m", "add_sub.metal")
    with pytest.raises(
        TritonError,
        match="model.metal:5: buffer.0. 'a' is 'float' .TYPE_FP32. but configuration "
        "input 'INPUT0' is TYPE_FP16",
    ):
        load_metal(path, ADD_SUB.replace("TYPE_FP32", "TYPE_FP16", 1))
    with pytest.raises(TritonError, match="lists its inputs and outputs"):
        load_metal(path, "max_batch_size: 8")
    (repo / "none" / "1").mkdir(parents=True)
    with pytest.raises(TritonError) as e:
        load_metal(repo / "none", ADD_SUB)
    assert e.value.code is ErrorCode.UNAVAILABLE
    (repo / "bin" / "1").mkdir(parents=True)
    (repo / "bin" / "1" / "model.metal").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TritonError, match="not UTF-8 text"):
        load_metal(repo / "bin", ADD_SUB)


def test_what_metalcompute_cannot_do_fails_the_load(repo):
    path = kernel_model(repo, "m", "add_sub.metal")
    with pytest.raises(TritonError) as e:
        load_metal(
            path, ADD_SUB + 'parameters { key: "grid" value { string_value: "(INPUT0.shape[0], 16)" } }'
        )
    assert e.value.code is ErrorCode.UNSUPPORTED and "1-D grids only" in str(e.value)
    with pytest.raises(TritonError) as e:
        load_metal(path, ADD_SUB + 'parameters { key: "threadgroup_size" value { string_value: "32" } }')
    assert e.value.code is ErrorCode.UNSUPPORTED and "lets Metal choose the threadgroup size" in str(e.value)


# --------------------------------------------------------------------------- calls (no Metal)


def test_a_batch_binds_inputs_then_outputs_with_one_thread_per_element(repo):
    model = load_metal(kernel_model(repo, "addsub", "add_sub.metal"), ADD_SUB)
    assert [(b.index, b.role, b.name) for b in model.plan.bindings] == [
        (0, "input", "INPUT0"),
        (1, "input", "INPUT1"),
        (2, "output", "OUTPUT0"),
        (3, "output", "OUTPUT1"),
    ]
    a, b = np.ones((3, 16), np.float32), np.zeros((2, 16), np.float32)
    call = prepare(
        model.plan,
        model.config,
        [request("addsub", INPUT0=a, INPUT1=a), request("addsub", INPUT0=b, INPUT1=b)],
    )
    assert call.grid == (80,) and call.threadgroup is None and call.sizes == [3, 2]
    np.testing.assert_array_equal(call.inputs[0], np.concatenate([a, b]))
    assert [(o.shape, o.dtype) for o in call.outputs] == [((5, 16), np.float32), ((5, 16), np.float32)]
    assert call.constants == []


def test_constants_are_typed_as_the_kernel_declares_them(repo):
    model = load_metal(kernel_model(repo, "scale", "scale.metal"), SCALE)
    call = prepare(model.plan, model.config, [request("scale", X=np.arange(100, dtype=np.float32))])
    assert call.grid == (128,)
    assert [(c.dtype, c.tolist()) for c in call.constants] == [
        (np.float32, [2.5]),
        (np.float32, [-1.0]),
        (np.uint32, [100]),
    ]
    assert call.outputs[0].shape == (100,)


def test_a_constant_that_does_not_fit_is_refused_per_request(repo):
    model = load_metal(
        kernel_model(repo, "scale", "scale.metal"), SCALE.replace('"X.size" }', '"X.size - 5" }')
    )
    with pytest.raises(TritonError, match="'n' = -2 does not fit 'uint'"):
        prepare(model.plan, model.config, [request("scale", X=np.arange(3, dtype=np.float32))])
    model = load_metal(
        kernel_model(repo, "frac", "scale.metal"), SCALE.replace('"X.size" }', '"X.size / 2" }')
    )
    with pytest.raises(TritonError, match="'n' = 1.5 is not a whole number"):
        prepare(model.plan, model.config, [request("frac", X=np.arange(3, dtype=np.float32))])


def test_output_shape_parameter(repo):
    pbtxt = SCALE.replace(
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [-1] }]',
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [-1, 2] }]',
    )
    pbtxt += 'parameters { key: "output_shape.Y" value { string_value: "(X.size // 2, 2)" } }\n'
    model = load_metal(kernel_model(repo, "scale", "scale.metal"), pbtxt)
    call = prepare(model.plan, model.config, [request("scale", X=np.arange(6, dtype=np.float32))])
    assert call.outputs[0].shape == (3, 2)
    with pytest.raises(TritonError, match="no output 'Z'"):
        load_metal(
            kernel_model(repo, "z", "scale.metal"),
            SCALE + 'parameters { key: "output_shape.Z" value { string_value: "(1,)" } }',
        )


# --------------------------------------------------------------------------- registration


def test_metal_is_listed_with_its_reason_where_it_cannot_run(repo):
    reg = BackendRegistry({})
    reg.register_plugin(plugin, "metal", "triton-backend-metal", "0.1.0")
    entry = reg.entry("metal")
    assert entry is not None
    entry.resolve()  # availability is checked when first needed
    if NO_METAL is None:
        assert entry.status == "available"
    else:
        assert entry.status != "available" and entry.reason == NO_METAL
    assert reg.for_model_files({"model.metal"}) is entry
    reg.close()


@pytest.mark.skipif(sys.platform == "darwin", reason="Metal may run here")
def test_a_kernel_model_fails_to_load_on_linux_with_the_reason(repo):
    kernel_model(repo, "addsub", "add_sub.metal")
    (repo / "addsub" / "config.pbtxt").write_text('backend: "metal"\n' + ADD_SUB)
    with pytest.raises(TritonError, match="Metal runs on macOS only"):
        with make_server(repo, plugin):
            pass


# --------------------------------------------------------------------------- dispatch (macOS)


@needs_metal
def test_add_sub_kernel_on_the_gpu(repo):
    model = load_metal(kernel_model(repo, "addsub", "add_sub.metal"), ADD_SUB)
    inst = instance(model, "KIND_GPU")
    a = np.arange(48, dtype=np.float32).reshape(3, 16)
    b = np.full((2, 16), 0.5, np.float32)
    r1, r2 = run(inst, request("addsub", INPUT0=a, INPUT1=a * 2), request("addsub", INPUT0=b, INPUT1=b))
    np.testing.assert_array_equal(r1.output("OUTPUT0").as_numpy(), a * 3)
    np.testing.assert_array_equal(r1.output("OUTPUT1").as_numpy(), -a)
    np.testing.assert_array_equal(r2.output("OUTPUT0").as_numpy(), b * 2)


@needs_metal
def test_constants_reach_the_kernel(repo):
    inst = instance(load_metal(kernel_model(repo, "scale", "scale.metal"), SCALE))
    x = np.arange(100, dtype=np.float32)
    (r,) = run(inst, request("scale", X=x))
    np.testing.assert_allclose(r.output("Y").as_numpy(), x * 2.5 - 1)


@needs_metal
def test_image_normalization_kernel(repo):
    pbtxt = """max_batch_size: 4
    input [{ name: "IMAGE" data_type: TYPE_UINT8 dims: [-1, -1, 3] }]
    output [{ name: "NORMALIZED" data_type: TYPE_FP32 dims: [-1, -1, 3] }]
    parameters { key: "mean" value { string_value: "0.5" } }
    parameters { key: "inv_std" value { string_value: "4" } }"""
    inst = instance(load_metal(kernel_model(repo, "norm", "normalize.metal"), pbtxt))
    img = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    (r,) = run(inst, request("norm", IMAGE=img))
    np.testing.assert_allclose(r.output("NORMALIZED").as_numpy(), (img / 255.0 - 0.5) * 4, rtol=1e-6)


@needs_metal
def test_a_kernel_metal_refuses_fails_the_instance(repo):
    folder = repo / "bad" / "1"
    folder.mkdir(parents=True)
    (folder / "model.metal").write_text(
        "kernel void k(const device float* x [[buffer(0)]], device float* y [[buffer(1)]],\n"
        "              uint i [[thread_position_in_grid]]) { y[i] = undefined_name; }\n"
    )
    model = load_metal(
        repo / "bad",
        'input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]',
    )
    with pytest.raises(TritonError) as e:
        instance(model)
    assert e.value.code is ErrorCode.INVALID_ARG and "Metal compiler refused" in str(e.value)


@needs_metal
def test_served_kernel_model(repo):
    kernel_model(repo, "addsub", "add_sub.metal")
    (repo / "addsub" / "config.pbtxt").write_text('backend: "metal"\n' + ADD_SUB)
    with make_server(repo, plugin) as s:
        a = np.ones((2, 16), np.float32)
        out = s.model("addsub").infer({"INPUT0": a, "INPUT1": a})
        np.testing.assert_array_equal(out["OUTPUT0"], a * 2)


def test_missing_datatypes_come_from_the_kernel_buffers(repo):
    pbtxt = """max_batch_size: 4
    input [{ name: "IMAGE" dims: [-1, -1, 3] }]
    output [{ name: "NORMALIZED" dims: [-1, -1, 3] }]
    parameters { key: "mean" value { string_value: "0.5" } }
    parameters { key: "inv_std" value { string_value: "4" } }"""
    model = load_metal(kernel_model(repo, "norm", "normalize.metal"), pbtxt)
    assert [io.data_type for io in (*model.config.input, *model.config.output)] == ["TYPE_UINT8", "TYPE_FP32"]
    call = prepare(model.plan, model.config, [request("norm", IMAGE=np.zeros((2, 4, 5, 3), np.uint8))])
    assert call.grid == (120,) and call.outputs[0].shape == (2, 4, 5, 3)
