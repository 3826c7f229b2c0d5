"""Helpers for the coreml backend tests: real Core ML models built with coremltools
(ML programs from MIL, neural networks from the NeuralNetworkBuilder), saved as the
.mlpackage / .mlmodel files the backend serves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from triton_backend_coreml.backend import CoreMLBackend
from triton_core.abi import BackendContext, ModelContext
from triton_core.config import ModelConfig, parse_pbtxt
from triton_core.request import InferenceRequest, RequestedOutput
from triton_core.tensor import Tensor

ON_MACOS = sys.platform == "darwin"
NEEDS_MACOS = (f"Core ML's predict() and compile_model() exist only on macOS (coremltools has no "
               f"Core ML bridge on {sys.platform}); the macOS arm64 workflow runs this test")


def _convert(prog, folder: Path, *, inputs=None, outputs=None, target=None, classifier=None) -> Path:
    import coremltools as ct

    mlmodel = ct.convert(prog, inputs=inputs, outputs=outputs,
                         minimum_deployment_target=target or ct.target.macOS13,
                         compute_precision=ct.precision.FLOAT32, classifier_config=classifier,
                         skip_model_load=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.mlpackage"
    mlmodel.save(str(path))
    return path


def relu_range(folder: Path, lo: int = 1, hi: int = 8) -> Path:
    """x [lo..hi, 4] FP32 -> y = relu(x)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(input_specs=[mb.TensorSpec(shape=(get_new_symbol(), 4))], opset_version=ct.target.macOS13)
    def prog(x):
        return mb.relu(x=x, name="y")

    return _convert(prog, folder, inputs=[ct.TensorType(name="x", shape=(ct.RangeDim(lo, hi), 4))])


def relu_enumerated(folder: Path, shapes=((1, 4), (2, 4), (4, 4))) -> Path:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(input_specs=[mb.TensorSpec(shape=(get_new_symbol(), 4))], opset_version=ct.target.macOS13)
    def prog(x):
        return mb.relu(x=x, name="y")

    enumerated = ct.EnumeratedShapes(shapes=list(shapes))
    return _convert(prog, folder, inputs=[ct.TensorType(name="x", shape=enumerated)])


def add_fixed(folder: Path) -> Path:
    """a, b [2, 3] INT32 -> s = a + b; f FP16 [3] -> h = f * 2 (FP16)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3), dtype=types.int32),
                             mb.TensorSpec(shape=(2, 3), dtype=types.int32),
                             mb.TensorSpec(shape=(3,), dtype=types.fp16)],
                opset_version=ct.target.macOS13)
    def prog(a, b, f):
        return mb.add(x=a, y=b, name="s"), mb.mul(x=f, y=np.float16(2), name="h")

    return _convert(prog, folder, inputs=[ct.TensorType(name="a", dtype=np.int32),
                                          ct.TensorType(name="b", dtype=np.int32),
                                          ct.TensorType(name="f", dtype=np.float16)],
                    outputs=[ct.TensorType(name="s", dtype=np.int32),
                             ct.TensorType(name="h", dtype=np.float16)])


def image_mean(folder: Path, color: str = "RGB", height: int = 4, width: int = 5,
               sizes: tuple[tuple[int, int], ...] = ()) -> Path:
    """image (H x W, color) -> m = per-channel mean, [1, C]."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    channels = 3 if color in ("RGB", "BGR") else 1
    shape = (1, channels, height, width)
    if sizes:
        shape = ct.EnumeratedShapes(shapes=[(1, channels, h, w) for h, w in sizes])

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, channels, height, width))],
                opset_version=ct.target.macOS13)
    def prog(image):
        return mb.reduce_mean(x=image, axes=[2, 3], name="m")

    layout = getattr(ct.colorlayout, color)
    return _convert(prog, folder, inputs=[ct.ImageType(name="image", shape=shape, color_layout=layout)])


def classifier(folder: Path, labels=("cat", "dog", "emu")) -> Path:
    """x [1, 3] -> classLabel (string), classLabel_probs (label -> softmax(x))."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, len(labels)))], opset_version=ct.target.macOS13)
    def prog(x):
        return mb.softmax(x=x, axis=-1, name="probs")

    return _convert(prog, folder, classifier=ct.ClassifierConfig(list(labels)))


def stateful_accumulator(folder: Path) -> Path:
    """State acc [1, 4] FP16; x [1, 4] FP16 -> y = acc + x, and acc becomes y (macOS 15+)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.StateTensorSpec((1, 4), dtype=types.fp16),
                             mb.TensorSpec((1, 4), dtype=types.fp16)],
                opset_version=ct.target.iOS18)
    def prog(acc, x):
        y = mb.add(x=mb.read_state(input=acc), y=x, name="y")
        mb.coreml_update_state(state=acc, value=y)
        return y

    mlmodel = ct.convert(prog, minimum_deployment_target=ct.target.iOS18, skip_model_load=True)
    folder.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(folder / "model.mlpackage"))
    return folder / "model.mlpackage"


def nn_double(folder: Path) -> Path:
    """A neural network (.mlmodel): x [3] DOUBLE -> y = relu(x) DOUBLE."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder
    from coremltools.proto import FeatureTypes_pb2

    b = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(3))],
                             disable_rank5_shape_mapping=True)
    b.add_activation("relu", "RELU", "x", "y")
    for f in (*b.spec.description.input, *b.spec.description.output):
        f.type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.DOUBLE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.mlmodel"
    ct.models.MLModel(b.spec, skip_model_load=True).save(str(path))
    return path


def load(model_path: Path, pbtxt: str | None = None, *, auto_complete: bool = True,
         cache: Path | None = None, backend_config: dict | None = None, version: int = 1):
    cfg = parse_pbtxt(pbtxt) if pbtxt is not None else ModelConfig()
    conf = dict(backend_config or {})
    if cache is not None:
        conf.setdefault("cache-directory", str(cache))
    backend = CoreMLBackend(BackendContext(name="coreml", config=conf))
    ctx = ModelContext(name=model_path.name, version=version, model_path=model_path, config=cfg,
                       auto_complete=auto_complete)
    return backend.load_model(ctx)


def request(model_name: str = "m", outputs: list[str] | None = None, **arrays) -> InferenceRequest:
    inputs = {k: Tensor.from_numpy(k, v) for k, v in arrays.items()}
    outs = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest(model_name=model_name, inputs=inputs, outputs=outs)


def nn_classifier(folder: Path, labels=(10, 20, 30)) -> Path:
    """A neural-network classifier (.mlmodel) with int64 labels: x [3] -> label (int64),
    scores (label -> softmax(x))."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    n = len(labels)
    b = NeuralNetworkBuilder([("x", datatypes.Array(n))], [("scores", datatypes.Array(n))],
                             mode="classifier", disable_rank5_shape_mapping=True)
    b.add_softmax_nd("softmax", "x", "scores", axis=-1)
    b.set_class_labels(list(labels), predicted_feature_name="label", prediction_blob="scores")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.mlmodel"
    ct.models.MLModel(b.spec, skip_model_load=True).save(str(path))
    return path


def nn_image_sizes(folder: Path) -> Path:
    """A neural network (.mlmodel) with a BGR image of enumerated sizes 4x5 and 8x10 (HxW):
    image -> m [3, 1, 1] = per-channel mean."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder
    from coremltools.models.neural_network import flexible_shape_utils as fsu

    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 4, 5))], [("m", datatypes.Array(3, 1, 1))])
    b.add_pooling("gap", height=1, width=1, stride_height=1, stride_width=1, layer_type="AVERAGE",
                  padding_type="VALID", input_name="image", output_name="m", is_global=True)
    b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=True)
    spec = b.spec
    fsu.add_enumerated_image_sizes(spec, "image", sizes=[fsu.NeuralNetworkImageSize(4, 5),
                                                         fsu.NeuralNetworkImageSize(8, 10)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.mlmodel"
    ct.models.MLModel(spec, skip_model_load=True).save(str(path))
    return path


class EchoPredictor:
    """Stands in for a Core ML model only in the tests of the worker process's plumbing
    (transport, errors, a dying worker, restart): it answers with its inputs, raises or
    exits on request. It is never served as a model."""

    def predict(self, data, state=None):
        if isinstance(data, list):
            return [self.predict(d) for d in data]
        if "exit" in data:
            import os

            os._exit(int(data["exit"]))
        if "raise" in data:
            raise RuntimeError(str(data["raise"]))
        return dict(data)


def echo_loader(fail: str = "") -> EchoPredictor:
    if fail:
        raise RuntimeError(fail)
    return EchoPredictor()
