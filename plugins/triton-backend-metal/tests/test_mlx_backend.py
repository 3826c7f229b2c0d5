"""The mlx backend on MLX's CPU build: export, auto-complete, dtypes, batching, errors."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from metal_backend_helpers import instance, load_mlx, request, run
from triton_backend_metal import plugin
from triton_backend_metal.mlx import runtime
from triton_backend_metal.mlx.export import export_model
from triton_backend_metal.mlx.signature import from_metadata
from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.testing import make_server

mx = pytest.importorskip("mlx.core")


def _add_sub(a, b):
    return a + b, a - b


def _scale(x):
    return x * 2


def add_sub_model(repo, name="addsub", dtype=np.float32, shapeless=True, datatypes=None):
    x = np.zeros((1, 16), dtype)
    export_model(
        repo / name / "1" / "model.mlxfn",
        _add_sub,
        inputs={"INPUT0": x, "INPUT1": x},
        outputs=["OUTPUT0", "OUTPUT1"],
        shapeless=shapeless,
        datatypes=datatypes,
    )
    return repo / name


def test_export_records_the_signature(repo):
    sig = export_model(
        repo / "m.mlxfn",
        _add_sub,
        inputs={"A": np.zeros((2, 16), np.int32), "B": np.zeros((2, 16), np.int32)},
        outputs=["S", "D"],
    )
    assert [(t.name, t.datatype, t.dims) for t in sig.inputs] == [
        ("A", DataType.INT32, (-1, 16)),
        ("B", DataType.INT32, (-1, 16)),
    ]
    assert [(t.name, t.dims) for t in sig.outputs] == [("S", (-1, 16)), ("D", (-1, 16))]
    _, metadata = runtime.run(lambda: mx.import_function(str(repo / "m.mlxfn"), return_metadata=True))
    assert from_metadata(metadata, "m") == sig


def test_output_axes_that_do_not_follow_the_batch_stay_fixed(repo):
    sig = export_model(
        repo / "m.mlxfn", lambda x: x.sum(axis=0), inputs={"X": np.zeros((3, 5), np.float32)}, outputs=["Y"]
    )
    assert sig.outputs[0].dims == (5,)
    assert not sig.can_batch()


def test_auto_complete_from_the_signature(repo):
    model = load_mlx(add_sub_model(repo))
    cfg = model.config
    assert cfg.max_batch_size == 4 and cfg.dynamic_batching is not None
    assert [(i.name, i.data_type, i.dims) for i in cfg.input] == [
        ("INPUT0", "TYPE_FP32", [16]),
        ("INPUT1", "TYPE_FP32", [16]),
    ]
    assert [(o.name, o.data_type, o.dims) for o in cfg.output] == [
        ("OUTPUT0", "TYPE_FP32", [16]),
        ("OUTPUT1", "TYPE_FP32", [16]),
    ]


def test_backend_config_sets_the_default_max_batch_size(repo):
    model = load_mlx(add_sub_model(repo), backend_config={"default-max-batch-size": "16"})
    assert model.config.max_batch_size == 16


def test_a_fixed_shape_export_is_not_batched(repo):
    model = load_mlx(add_sub_model(repo, shapeless=False))
    assert model.config.max_batch_size == 0
    assert model.config.input[0].dims == [1, 16]
    with pytest.raises(TritonError) as e:
        load_mlx(add_sub_model(repo, "fixed", shapeless=False), "max_batch_size: 8")
    assert e.value.code is ErrorCode.INVALID_ARG and "does not support batching" in str(e.value)


def test_dynamic_batch_runs_as_one_call_and_scatters(repo):
    model = load_mlx(add_sub_model(repo), "max_batch_size: 8")
    inst = instance(model)
    a = np.arange(48, dtype=np.float32).reshape(3, 16)
    b = np.ones((2, 16), np.float32)
    r1, r2 = run(inst, request("addsub", INPUT0=a, INPUT1=a), request("addsub", INPUT0=b, INPUT1=b * 3))
    np.testing.assert_array_equal(r1.output("OUTPUT0").as_numpy(), a + a)
    np.testing.assert_array_equal(r1.output("OUTPUT1").as_numpy(), np.zeros_like(a))
    np.testing.assert_array_equal(r2.output("OUTPUT0").as_numpy(), b * 4)
    np.testing.assert_array_equal(r2.output("OUTPUT1").as_numpy(), -b * 2)


def test_requested_outputs_only(repo):
    inst = instance(load_mlx(add_sub_model(repo), "max_batch_size: 8"))
    a = np.ones((1, 16), np.float32)
    (r,) = run(inst, request("addsub", outputs=["OUTPUT1"], INPUT0=a, INPUT1=a))
    assert [t.name for t in r.outputs] == ["OUTPUT1"]


def test_inputs_follow_the_signature_not_the_config_order(repo):
    pbtxt = """max_batch_size: 8
    input [{ name: "INPUT1" data_type: TYPE_FP32 dims: [16] },
           { name: "INPUT0" data_type: TYPE_FP32 dims: [16] }]
    output [{ name: "OUTPUT1" data_type: TYPE_FP32 dims: [16] }]"""
    inst = instance(load_mlx(add_sub_model(repo), pbtxt))
    a, b = np.full((1, 16), 5, np.float32), np.full((1, 16), 2, np.float32)
    (r,) = run(inst, request("addsub", INPUT0=a, INPUT1=b))
    np.testing.assert_array_equal(r.output("OUTPUT1").as_numpy(), a - b)


NUMERIC = [d for d in DataType if d not in (DataType.BYTES, DataType.BF16)]


@pytest.mark.parametrize("dt", NUMERIC, ids=lambda d: d.value)
def test_identity_of_every_numeric_type(repo, dt):
    x = (
        (np.arange(6) % 2).astype(dt.numpy).reshape(2, 3)
        if dt is DataType.BOOL
        else np.arange(6).astype(dt.numpy).reshape(2, 3)
    )
    export_model(
        repo / "ident" / "1" / "model.mlxfn",
        lambda t: t,
        inputs={"X": x[:1]},
        outputs=["Y"],
        variable_axes=(0, 1),
    )
    model = load_mlx(repo / "ident", "max_batch_size: 4")
    assert model.config.input[0].data_type == dt.config_name
    (r,) = run(instance(model), request("ident", X=x))
    out = r.output("Y").as_numpy()
    assert out.dtype == dt.numpy
    np.testing.assert_array_equal(out, x)


def _bf16(values) -> np.ndarray:
    """bfloat16 bits of float32 values (exact for these small numbers)."""
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def test_bf16_arithmetic(repo):
    model = load_mlx(add_sub_model(repo, dtype=np.uint16, datatypes={"INPUT0": "BF16", "INPUT1": "BF16"}))
    assert model.config.input[0].data_type == "TYPE_BF16"
    a, b = _bf16([[1.0, 2.0, 3.0, 4.0] * 4]), _bf16([[0.5] * 16])
    (r,) = run(
        instance(model),
        request("addsub", datatypes={"INPUT0": DataType.BF16, "INPUT1": DataType.BF16}, INPUT0=a, INPUT1=b),
    )
    assert r.output("OUTPUT0").datatype is DataType.BF16
    np.testing.assert_array_equal(r.output("OUTPUT0").as_numpy(), _bf16([[1.5, 2.5, 3.5, 4.5] * 4]))
    np.testing.assert_array_equal(r.output("OUTPUT1").as_numpy(), _bf16([[0.5, 1.5, 2.5, 3.5] * 4]))


def test_fp16_arithmetic(repo):
    inst = instance(load_mlx(add_sub_model(repo, dtype=np.float16)))
    a = np.linspace(-2, 2, 16, dtype=np.float16).reshape(1, 16)
    (r,) = run(inst, request("addsub", INPUT0=a, INPUT1=a))
    np.testing.assert_array_equal(r.output("OUTPUT0").as_numpy(), a + a)
    assert r.output("OUTPUT0").as_numpy().dtype == np.float16


# --------------------------------------------------------------------------- errors


def test_config_datatype_must_match_the_signature(repo):
    pbtxt = """input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
           { name: "INPUT1" data_type: TYPE_FP32 dims: [16] }]
    output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] }]
    max_batch_size: 8"""
    with pytest.raises(TritonError) as e:
        load_mlx(add_sub_model(repo), pbtxt)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert "TYPE_INT32 for input 'INPUT0', model provides TYPE_FP32" in str(e.value)


def test_config_dims_must_match_the_signature(repo):
    pbtxt = """max_batch_size: 8
    input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [8] },
           { name: "INPUT1" data_type: TYPE_FP32 dims: [16] }]
    output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] }]"""
    with pytest.raises(TritonError, match=r"expects dims \[8\] for input 'INPUT0', model provides \[16\]"):
        load_mlx(add_sub_model(repo), pbtxt)


def test_unknown_config_input_and_output(repo):
    with pytest.raises(TritonError, match="model provides 2 .INPUT0, INPUT1."):
        load_mlx(
            add_sub_model(repo),
            """max_batch_size: 8
        input [{ name: "X" data_type: TYPE_FP32 dims: [16] }]
        output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] }]""",
        )
    with pytest.raises(TritonError, match="unexpected inference output 'Z'"):
        load_mlx(
            add_sub_model(repo, "b"),
            """max_batch_size: 8
        input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] },
               { name: "INPUT1" data_type: TYPE_FP32 dims: [16] }]
        output [{ name: "Z" data_type: TYPE_FP32 dims: [16] }]""",
        )


def test_bytes_is_refused(repo):
    _plain_export(repo, "plain", "mx.export_function('model.mlxfn', lambda x: x, mx.zeros((4,)))")
    with pytest.raises(TritonError, match="'X' has datatype TYPE_STRING, which MLX cannot hold"):
        load_mlx(
            repo / "plain",
            """
        input [{ name: "X" data_type: TYPE_STRING dims: [4] }]
        output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]""",
        )


def test_missing_and_corrupt_files(repo):
    (repo / "none" / "1").mkdir(parents=True)
    with pytest.raises(TritonError) as e:
        load_mlx(repo / "none")
    assert e.value.code is ErrorCode.UNAVAILABLE and "model.mlxfn" in str(e.value)
    (repo / "bad" / "1").mkdir(parents=True)
    (repo / "bad" / "1" / "model.mlxfn").write_bytes(b"\x00\xff not an mlx function")
    with pytest.raises(TritonError) as e:
        load_mlx(repo / "bad")
    assert e.value.code is ErrorCode.INVALID_ARG and "MLX cannot import" in str(e.value)


def _plain_export(repo, name: str, code: str) -> None:
    """mx.export_function without metadata, in another process (as a user would)."""
    folder = repo / name / "1"
    folder.mkdir(parents=True)
    script = textwrap.dedent(f"""
        import mlx.core as mx
        {code}
    """)
    subprocess.run([sys.executable, "-c", script], cwd=folder, check=True)


def test_a_plain_export_needs_the_config_and_is_checked_by_a_call(repo):
    _plain_export(
        repo,
        "plain",
        "mx.export_function('model.mlxfn', lambda x: x * 2, "
        "mx.zeros((1, 4), dtype=mx.int32), shapeless=True)",
    )
    with pytest.raises(TritonError, match="carries no signature"):
        load_mlx(repo / "plain")
    good = """max_batch_size: 8
    input [{ name: "X" data_type: TYPE_INT32 dims: [4] }]
    output [{ name: "Y" data_type: TYPE_INT32 dims: [4] }]"""
    inst = instance(load_mlx(repo / "plain", good))
    x = np.arange(8, dtype=np.int32).reshape(2, 4)
    (r,) = run(inst, request("plain", X=x))
    np.testing.assert_array_equal(r.output("Y").as_numpy(), x * 2)
    with pytest.raises(TritonError) as e:
        load_mlx(
            repo / "plain",
            good.replace("TYPE_INT32 dims: [4] }]\n    output", "TYPE_FP32 dims: [4] }]\n    output"),
        )
    assert e.value.code is ErrorCode.INVALID_ARG and "does not accept the configured inputs" in str(e.value)
    with pytest.raises(
        TritonError, match="expects datatype TYPE_FP32 for output 'Y', the function returns int32"
    ):
        load_mlx(repo / "plain", good.replace('"Y" data_type: TYPE_INT32', '"Y" data_type: TYPE_FP32'))


def test_a_plain_fixed_shape_export_cannot_batch(repo):
    _plain_export(repo, "fixed", "mx.export_function('model.mlxfn', lambda x: x + 1, mx.zeros((1, 4)))")
    with pytest.raises(TritonError, match="does not accept a batch of 2"):
        load_mlx(
            repo / "fixed",
            """max_batch_size: 8
        input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
        output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]""",
        )


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="MLX has a GPU here")
def test_kind_gpu_without_an_mlx_gpu_is_unavailable(repo):
    model = load_mlx(add_sub_model(repo))
    with pytest.raises(TritonError) as e:
        instance(model, "KIND_GPU")
    assert e.value.code is ErrorCode.UNAVAILABLE and "no GPU device" in str(e.value)


# --------------------------------------------------------------------------- served


def test_served_with_dynamic_batching_and_two_instances(repo):
    add_sub_model(repo)
    (repo / "addsub" / "config.pbtxt").write_text(
        'backend: "mlx"\nmax_batch_size: 8\n'
        "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
        "instance_group [{ kind: KIND_CPU count: 2 }]\n"
    )
    with make_server(repo, plugin) as s:
        assert s.model_config_json("addsub")["input"][0]["dims"] == [16]
        inputs = [np.full((1, 16), i, np.float32) for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda a: s.model("addsub").infer({"INPUT0": a, "INPUT1": a}), inputs))
        for a, out in zip(inputs, outs, strict=True):
            np.testing.assert_array_equal(out["OUTPUT0"], a * 2)
            np.testing.assert_array_equal(out["OUTPUT1"], a * 0)


def test_plugin_declares_both_backends_and_discovery_serves_mlx(repo):
    specs = {s.name: s for s in plugin.triton_backends()}
    assert set(specs) == {"mlx", "metal"}
    assert specs["mlx"].default_model_filename == "model.mlxfn" and specs["mlx"].available() is None
    assert specs["metal"].default_model_filename == "model.metal"
    add_sub_model(repo)
    with make_server(repo, plugin) as s:  # no config.pbtxt: found by model.mlxfn, auto-completed
        cfg = s.model_config_json("addsub")
        assert cfg["backend"] == "mlx" and cfg["max_batch_size"] == 4
        a = np.ones((1, 16), np.float32)
        np.testing.assert_array_equal(s.model("addsub").infer({"INPUT0": a, "INPUT1": a})["OUTPUT0"], a * 2)


def test_one_bad_request_does_not_fail_the_others_of_its_batch(repo):
    inst = instance(load_mlx(add_sub_model(repo), "max_batch_size: 8"))
    a = np.ones((1, 16), np.float32)
    bad = request("addsub", INPUT0=a, INPUT1=np.ones((1, 8), np.float32))  # the core would refuse it
    ok1, err, ok2 = run(
        inst, request("addsub", INPUT0=a, INPUT1=a), bad, request("addsub", INPUT0=a, INPUT1=a)
    )
    np.testing.assert_array_equal(ok1.output("OUTPUT0").as_numpy(), a * 2)
    np.testing.assert_array_equal(ok2.output("OUTPUT0").as_numpy(), a * 2)
    assert err.error is not None and err.error.code is ErrorCode.INVALID_ARG
    assert "cannot be broadcast" in str(err.error)


def test_a_function_exported_on_another_thread_of_the_process_is_explained(repo):
    """MLX streams belong to threads: a file exported on this process's main thread names a
    stream the MLX thread cannot use. Run in a fresh process, where the main thread exports first."""
    script = textwrap.dedent(f"""
        import mlx.core as mx
        from triton_core.errors import ErrorCode, TritonError
        from triton_core.config import parse_pbtxt
        from triton_core.abi import ModelContext
        from triton_backend_metal.mlx.backend import MlxBackend
        from pathlib import Path
        folder = Path({str(repo)!r}) / "m"
        (folder / "1").mkdir(parents=True)
        path = str(folder / "1" / "model.mlxfn")
        mx.export_function(path, lambda x: x + 1, mx.zeros((1, 4)), shapeless=True)
        cfg = parse_pbtxt('input [{{ name: "X" data_type: TYPE_FP32 dims: [1, 4] }}] '
                          'output [{{ name: "Y" data_type: TYPE_FP32 dims: [1, 4] }}]')
        try:
            MlxBackend().load_model(ModelContext("m", 1, folder, cfg))
        except TritonError as e:
            assert e.code is ErrorCode.UNAVAILABLE, e
            assert "belong to one thread" in str(e), e
            print("REFUSED")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "REFUSED" in out.stdout, out.stderr
