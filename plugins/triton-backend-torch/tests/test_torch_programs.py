"""PyTorch 2 programs in model.pt2: torch.export ExportedPrograms (config auto-complete from
their signature, Triton's .pt2 names, checks with Triton's words) and AOTInductor packages;
the file's content, not its name, tells the formats apart."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from torch_backend_helpers import instance, load, request, run, save_exported, save_script

from triton_backend_torch.formats import ModelFormat, detect
from triton_core.errors import ErrorCode, TritonError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


class Heads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        h = self.proj(x)
        return {"logits": h * mask, "aux": (h.sum(1), h.amax(1))}


class Scaled(torch.nn.Module):
    def forward(self, x: torch.Tensor, *, scale: torch.Tensor):
        return x * scale


class Twice(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


BATCH = torch.export.Dim("batch", min=1, max=16)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """(module, the folder of its exported program without a config)."""
    torch.manual_seed(0)
    net = Heads().eval()
    repo = tmp_path_factory.mktemp("ep")
    folder = save_exported(repo, "heads", net, (torch.ones(2, 4), torch.ones(2, 3)),
                           dynamic_shapes={"x": {0: BATCH}, "mask": {0: BATCH}})
    return net, folder


def _copy(folder, repo, name: str, pbtxt: str | None = None):
    dst = repo / name
    shutil.copytree(folder, dst)
    if pbtxt is not None:
        (dst / "config.pbtxt").write_text(pbtxt)
    return dst


def test_auto_complete_from_the_program_signature(heads, repo):
    _, folder = heads
    cfg = load(_copy(folder, repo, "heads")).config
    assert cfg.platform == "torch_export" and cfg.backend == "pytorch"
    assert cfg.max_batch_size == 16  # the batch Dim's upper bound
    assert cfg.dynamic_batching is not None
    assert [(i.name, i.data_type, i.dims) for i in cfg.input] == [
        ("x", "TYPE_FP32", [4]), ("mask", "TYPE_FP32", [3])]
    assert [(o.name, o.data_type, o.dims) for o in cfg.output] == [
        ("logits", "TYPE_FP32", [3]), ("RESULT[aux][0]", "TYPE_FP32", [1]),
        ("RESULT[aux][1]", "TYPE_FP32", [1])]
    assert cfg.output[1].reshape is not None and cfg.output[1].reshape.shape == []  # a batch of scalars


def test_a_batch_dim_without_upper_bound_gets_the_default_max_batch_size(repo):
    # torch.export.Dim without max: its range's upper bound is torch's int_oo
    folder = save_exported(repo, "open", Twice(), (torch.ones(2, 3),),
                           dynamic_shapes={"x": {0: torch.export.Dim("b")}})
    cfg = load(folder).config
    assert cfg.max_batch_size == 4 and cfg.dynamic_batching is not None


def test_batched_execute_matches_the_module(heads, repo):
    net, folder = heads
    inst = instance(load(_copy(folder, repo, "heads")))
    x1, x2 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)[:, :2]
    m = np.ones((2, 3), np.float32)
    (r1, r2), _ = run(inst, request("heads", x=x1, mask=m), request("heads", x=x2, mask=m))
    for x, r in ((x1, r1), (x2, r2)):
        assert r.error is None, r.error
        want = net(torch.from_numpy(x), torch.from_numpy(m))
        np.testing.assert_allclose(r.output("logits").as_numpy(), want["logits"].detach().numpy(), rtol=1e-5)
        np.testing.assert_allclose(r.output("RESULT[aux][1]").as_numpy(),  # [batch, 1]: the reshape
                                   want["aux"][1].detach().numpy()[:, None], rtol=1e-5)


def test_ordinal_and_path_names(heads, repo):
    _, folder = heads
    pbtxt = """
max_batch_size: 4
input [{ name: "INPUT__1" data_type: TYPE_FP32 dims: [3] },
       { name: "ARGS[0]" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [3] },
        { name: "RESULT[aux][0]" data_type: TYPE_FP32 dims: [1] reshape: { shape: [] } }]
"""
    inst = instance(load(_copy(folder, repo, "named", pbtxt)))
    x, m = np.ones((1, 4), np.float32), np.zeros((1, 3), np.float32)
    (r,), _ = run(inst, request("named", **{"ARGS[0]": x, "INPUT__1": m}))
    assert r.error is None, r.error
    np.testing.assert_array_equal(r.output("OUTPUT__0").as_numpy(), np.zeros((1, 3), np.float32))
    assert r.output("RESULT[aux][0]").as_numpy().shape == (1, 1)


@pytest.mark.parametrize(("edit", "words"), [
    (("TYPE_FP32 dims: [4]", "TYPE_FP64 dims: [4]"),
     "configuration expects datatype TYPE_FP64 for input 'x', model provides TYPE_FP32"),
    (("dims: [4]", "dims: [5]"), "configuration expects shape [5] for input 'x'"),
    (('"mask"', '"INPUT__0"'), "do not name each of the program's inputs"),  # x twice
])
def test_config_that_differs_from_the_program_fails_the_load(heads, repo, edit, words):
    _, folder = heads
    pbtxt = """
max_batch_size: 4
input [{ name: "x" data_type: TYPE_FP32 dims: [4] }, { name: "mask" data_type: TYPE_FP32 dims: [3] }]
output [{ name: "logits" data_type: TYPE_FP32 dims: [3] }]
""".replace(*edit)
    with pytest.raises(TritonError) as e:
        load(_copy(folder, repo, "bad", pbtxt))
    assert e.value.code is ErrorCode.INVALID_ARG and words in e.value.message


def test_fixed_first_dim_cannot_batch(repo):
    folder = save_exported(repo, "fixed", Scaled(), (torch.ones(2, 3),), {"scale": torch.ones(1)})
    cfg = load(folder).config
    assert cfg.max_batch_size == 0
    assert [i.name for i in cfg.input] == ["x", "scale"]  # a keyword argument keeps its name
    (folder / "config.pbtxt").write_text("""
max_batch_size: 2
input [{ name: "x" data_type: TYPE_FP32 dims: [3] }, { name: "scale" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [3] }]""")
    with pytest.raises(TritonError) as e:
        load(folder)
    assert "fixed first dimension" in e.value.message and "torch.export.Dim" in e.value.message


def test_keyword_argument(repo):
    folder = save_exported(repo, "kw", Scaled(), (torch.ones(2, 3),), {"scale": torch.ones(1)})
    (r,), _ = run(instance(load(folder)),
                  request("kw", x=np.ones((2, 3), np.float32), scale=np.array([4], np.float32)))
    np.testing.assert_array_equal(r.output("OUTPUT__0").as_numpy(), np.full((2, 3), 4, np.float32))


def test_formats_are_told_apart_by_content(heads, repo):
    _, folder = heads
    assert detect(folder / "1" / "model.pt2", "m") is ModelFormat.EXPORTED_PROGRAM
    ts = save_script(repo, "ts", torch.nn.Identity())
    renamed = ts / "1" / "model.pt2"
    (ts / "1" / "model.pt").rename(renamed)
    assert detect(renamed, "m") is ModelFormat.TORCHSCRIPT
    (repo / "ep_as_pt" / "1").mkdir(parents=True)
    shutil.copy(folder / "1" / "model.pt2", repo / "ep_as_pt" / "1" / "model.pt")
    assert load(repo / "ep_as_pt").format is ModelFormat.EXPORTED_PROGRAM


class Small(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return x * 2 + 1, x.sum(1)


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """An AOTInductor package compiled here (needs a C++ compiler: gcc/g++ on Linux)."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("AOTInductor compiles C++: no g++/c++ on PATH")
    repo = tmp_path_factory.mktemp("aoti")
    ep = torch.export.export(Small(), (torch.ones(2, 3),), dynamic_shapes={"x": {0: BATCH}})
    folder = repo / "small"
    (folder / "1").mkdir(parents=True)
    try:
        torch._inductor.aoti_compile_and_package(ep, package_path=str(folder / "1" / "model.pt2"))
    except Exception as e:  # noqa: BLE001
        if sys.platform.startswith("linux"):  # the CI compiles here: a failure is a failure
            raise
        pytest.skip(f"AOTInductor cannot compile on {sys.platform} here: {type(e).__name__}: {e}")
    return folder


AOTI_CONFIG = """
platform: "torch_aoti"
max_batch_size: 8
input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [3] },
        { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [1] }]
"""


def test_aoti_package_serves_batches(aoti_package, repo):
    folder = _copy(aoti_package, repo, "small", AOTI_CONFIG)
    m = load(folder)
    assert m.format is ModelFormat.AOTI and m.config.platform == "torch_aoti"
    inst = instance(m)
    a, b = np.ones((1, 3), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3)
    (ra, rb), _ = run(inst, request("small", INPUT__0=a), request("small", INPUT__0=b))
    np.testing.assert_array_equal(rb.output("OUTPUT__0").as_numpy(), b * 2 + 1)
    np.testing.assert_array_equal(ra.output("OUTPUT__1").as_numpy().reshape(-1), [3])


def test_aoti_needs_its_config_and_checks_dtypes_at_run_time(aoti_package, repo):
    with pytest.raises(TritonError) as e:
        load(_copy(aoti_package, repo, "noconfig"))
    assert "needs its input and output in config.pbtxt" in e.value.message
    inst = instance(load(_copy(aoti_package, repo, "wrong", AOTI_CONFIG.replace(
        'OUTPUT__1" data_type: TYPE_FP32', 'OUTPUT__1" data_type: TYPE_FP16'))))
    (r,), _ = run(inst, request("wrong", INPUT__0=np.ones((1, 3), np.float32)))
    assert r.error.message == "configuration expects datatype TYPE_FP16 for output 'OUTPUT__1', " \
                              "model provides TYPE_FP32"
