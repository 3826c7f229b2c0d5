"""Triton's PyTorch python runtime (runtime: "model.py"): the Module class in model.py, its
weights from model.pt beside it, torch.compile with TORCH_COMPILE_OPTIONAL_PARAMETERS."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch_backend_helpers import instance, load, request, run

from triton_backend_torch.formats import ModelFormat
from triton_core.errors import ErrorCode, TritonError

SOURCE = textwrap.dedent('''
    import torch
    from torch.nn import Module  # imported: not the model


    class Net(Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x), x.sum(1, keepdim=True)
''')

W = torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]])
B = torch.tensor([0.25, -0.5])


def config(compile_json: str | None = '{\\"backend\\": \\"eager\\"}') -> str:
    text = """
backend: "pytorch"
runtime: "model.py"
max_batch_size: 4
input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [2] },
        { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [1] }]
"""
    if compile_json is not None:
        key = '"TORCH_COMPILE_OPTIONAL_PARAMETERS"'
        text += f'parameters {{ key: {key} value {{ string_value: "{compile_json}" }} }}\n'
    return text


def write_model(repo, name: str, source: str = SOURCE, weights: dict | None = None, pbtxt: str | None = None):
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(source)
    if weights is not None:
        torch.save(weights, folder / "1" / "model.pt")
    (folder / "config.pbtxt").write_text(pbtxt or config())
    return folder


@pytest.mark.parametrize("compile_json", ['{\\"backend\\": \\"eager\\"}', '{\\"disable\\": true}'],
                         ids=["compiled", "eager"])
def test_module_with_weights_serves_batches(repo, compile_json):
    folder = write_model(repo, "net", weights={"lin.weight": W, "lin.bias": B}, pbtxt=config(compile_json))
    m = load(folder)
    assert m.format is ModelFormat.PYTHON_RUNTIME
    inst = instance(m)
    x1 = np.array([[1, 2, 3]], np.float32)
    x2 = np.array([[0, 1, 0], [2, 2, 2]], np.float32)
    (r1, r2), _ = run(inst, request("net", INPUT__0=x1), request("net", INPUT__0=x2))
    for x, r in ((x1, r1), (x2, r2)):
        assert r.error is None, r.error
        want = x @ W.numpy().T + B.numpy()
        np.testing.assert_allclose(r.output("OUTPUT__0").as_numpy(), want, rtol=1e-6)
        np.testing.assert_array_equal(r.output("OUTPUT__1").as_numpy(), x.sum(1, keepdims=True))


def test_without_weights_the_module_keeps_its_initial_ones(repo):
    inst = instance(load(write_model(repo, "net", pbtxt=config('{\\"disable\\": true}'))))
    (r,), _ = run(inst, request("net", INPUT__0=np.ones((1, 3), np.float32)))
    assert r.error is None and r.output("OUTPUT__0").as_numpy().shape == (1, 2)


@pytest.mark.parametrize(("source", "weights", "pbtxt", "words"), [
    ("x = 1\n", None, None, "defines no subclass of torch.nn.Module"),
    ("import torch\nraise ValueError('boom')\n", None, None, "ValueError: boom"),
    (SOURCE, {"other.weight": W}, None, "do not load into Net"),
    (SOURCE, None, config('{\\"model\\": 1}'), "'model' is not an optional parameter for 'torch.compile'"),
    (SOURCE, None, config('{\\"mode\\": \\"no-such-mode\\"}'), "torch.compile"),
], ids=["no-module", "import-fails", "wrong-weights", "model-key", "bad-compile-args"])
def test_bad_model_py_fails_the_load_with_the_reason(repo, source, weights, pbtxt, words):
    folder = write_model(repo, "bad", source, weights, pbtxt)
    with pytest.raises(TritonError) as e:
        instance(load(folder))
    assert e.value.code is ErrorCode.INVALID_ARG
    assert words in e.value.message


def test_other_runtime_is_refused(repo):
    folder = write_model(repo, "net", pbtxt=config().replace('"model.py"', '"model.so"'))
    with pytest.raises(TritonError) as e:
        load(folder)
    assert "runtime 'model.so' is not served by the pytorch backend" in e.value.message
