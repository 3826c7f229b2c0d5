"""Real Core ML predictions through the server (macOS only: Core ML's predict() exists only
there). The macOS arm64 workflow runs these with compute units CPU_ONLY and ALL."""

from __future__ import annotations

import platform
import shutil

import numpy as np
import pytest
from coreml_backend_helpers import NEEDS_MACOS, ON_MACOS

from triton_backend_coreml import plugin
from triton_core.errors import TritonError
from triton_core.request import (
    REQUEST_FLAG_SEQUENCE_END,
    REQUEST_FLAG_SEQUENCE_START,
    InferenceRequest,
)
from triton_core.tensor import Tensor
from triton_core.testing import make_server, serving_http

pytestmark = pytest.mark.skipif(not ON_MACOS, reason=NEEDS_MACOS)

UNITS = ("CPU_ONLY", "ALL")


def _macos() -> tuple[int, ...]:
    return tuple(int(p) for p in (platform.mac_ver()[0] or "0").split("."))


@pytest.fixture
def serve(tmp_path, models, monkeypatch):
    """serve({name: (built model, config text)}) -> a started server over a fresh repository."""
    monkeypatch.setenv("TRITON_COREML_CACHE", str(tmp_path / "cache"))
    servers = []

    def start(spec: dict[str, tuple[str, str]]):
        repo = tmp_path / "repo"
        for name, (built, text) in spec.items():
            shutil.copytree(models[built] / "1", repo / name / "1")
            (repo / name / "config.pbtxt").write_text('backend: "coreml"\n' + text)
        server = make_server(repo, plugin, exit_on_error=False)
        server.start()
        servers.append(server)
        for name in spec:
            assert server.model_ready(name), server.manager.index()
        return server

    yield start
    for s in servers:
        s.stop()


def _units(u: str) -> str:
    return f'parameters {{ key: "compute_units" value {{ string_value: "{u}" }} }}\n'


@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker-process"])
def test_fixed_model_int32_and_fp16(serve, units, worker):
    extra = 'parameters { key: "worker_process" value { string_value: "true" } }\n' if worker else ""
    server = serve({"add": ("add_fixed", _units(units) + extra)})
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    f = np.array([0.5, 1.5, -2], np.float16)
    out = server.model("add").infer({"a": a, "b": a, "f": f})
    np.testing.assert_array_equal(out["s"], a * 2)
    assert out["h"].dtype == np.float16
    np.testing.assert_array_equal(out["h"], f * 2)


@pytest.mark.parametrize("units", UNITS)
def test_batch_dimension_model(serve, units):
    server = serve({"relu": ("relu_range", _units(units))})
    x = np.array([[-1, 2, -3, 4], [5, -6, 7, -8], [0, 1, -1, 2]], np.float32)
    out = server.model("relu").infer({"x": x})
    np.testing.assert_allclose(out["y"], np.maximum(x, 0), rtol=1e-3)


def test_enumerated_batch_sizes_are_cut_into_allowed_calls(serve):
    server = serve({"relu": ("relu_enum", _units("CPU_ONLY"))})
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 6  # 3 rows: calls of 2 and 1
    np.testing.assert_array_equal(server.model("relu").infer({"x": x})["y"], np.maximum(x, 0))


def test_list_batch_prediction(serve):
    server = serve({"add": ("add_fixed", "max_batch_size: 4\n" + _units("CPU_ONLY"))})
    a = np.arange(18, dtype=np.int32).reshape(3, 2, 3)
    f = np.ones((3, 3), np.float16)
    out = server.model("add").infer({"a": a, "b": a, "f": f})
    np.testing.assert_array_equal(out["s"], a * 2)


@pytest.mark.parametrize("built, order", [("image_rgb", (0, 1, 2)), ("image_bgr", (2, 1, 0))])
def test_image_inputs_reach_the_model_in_its_color_layout(serve, built, order):
    server = serve({"img": (built, _units("CPU_ONLY"))})
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    out = server.model("img").infer({"image": img})
    rgb = np.array([10, 20, 30], np.float32)
    np.testing.assert_allclose(out["m"].reshape(-1), rgb[list(order)], atol=0.5)


def test_classifier_and_the_classification_extension(serve):
    import tritonclient.http as httpclient

    server = serve({"cls": ("classifier", _units("CPU_ONLY"))})
    x = np.array([[0.1, 3.0, 0.5]], np.float32)
    out = server.model("cls").infer({"x": x})
    assert out["classLabel"].tolist() == [b"dog"]
    probs = np.exp(x[0]) / np.exp(x[0]).sum()
    np.testing.assert_allclose(out["classLabel_probs"], probs, rtol=1e-3)
    with serving_http(server) as url:
        client = httpclient.InferenceServerClient(url)
        inp = httpclient.InferInput("x", [1, 3], "FP32")
        inp.set_data_from_numpy(x)
        res = client.infer("cls", [inp], outputs=[httpclient.InferRequestedOutput("classLabel_probs",
                                                                                  class_count=2)])
        top = res.as_numpy("classLabel_probs")
        assert [t.split(b":")[1:] for t in top] == [[b"1", b"dog"], [b"2", b"emu"]]
        client.close()


@pytest.mark.skipif(ON_MACOS and _macos() < (15,), reason="Core ML states (MLState) need macOS 15")
def test_stateful_model_keeps_state_per_sequence(serve):
    server = serve({"acc": ("stateful", _units("CPU_ONLY"))})
    x = np.array([[1, 2, 3, 4]], np.float16)

    def step(corrid: int, flags: int) -> np.ndarray:
        req = InferenceRequest(model_name="acc", inputs={"x": Tensor.from_numpy("x", x)},
                               correlation_id=corrid, flags=flags)
        return server.infer(req).output("y").as_numpy()

    np.testing.assert_array_equal(step(7, REQUEST_FLAG_SEQUENCE_START), x)
    np.testing.assert_array_equal(step(8, REQUEST_FLAG_SEQUENCE_START), x)
    np.testing.assert_array_equal(step(7, 0), x * 2)
    np.testing.assert_array_equal(step(7, REQUEST_FLAG_SEQUENCE_END), x * 3)
    np.testing.assert_array_equal(step(8, REQUEST_FLAG_SEQUENCE_END), x * 2)


def test_a_reload_reuses_the_compiled_copy(serve, tmp_path):
    server = serve({"add": ("add_fixed", _units("CPU_ONLY"))})
    compiled = list((tmp_path / "cache" / "add" / "1").glob("*/model.mlmodelc"))
    assert len(compiled) == 1
    before = compiled[0].stat().st_mtime_ns
    server.unload_model("add")
    server.load_model("add")
    assert server.model_ready("add")
    assert list((tmp_path / "cache" / "add" / "1").glob("*/model.mlmodelc")) == compiled
    assert compiled[0].stat().st_mtime_ns == before


def test_shape_errors_leave_the_server_serving(serve):
    config = ('input [{ name: "x" data_type: TYPE_FP32 dims: [-1, 4] }]\n'
              'output [{ name: "y" data_type: TYPE_FP32 dims: [-1, 4] }]\n')
    server = serve({"relu": ("relu_range", config + _units("CPU_ONLY"))})
    nine = np.ones((9, 4), np.float32)  # the model's first dimension is 1..8
    with pytest.raises(TritonError, match="dimension 0 is 9, outside 1..8"):
        server.infer(InferenceRequest(model_name="relu", inputs={"x": Tensor.from_numpy("x", nine)}))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(server.model("relu").infer({"x": x})["y"], x)
