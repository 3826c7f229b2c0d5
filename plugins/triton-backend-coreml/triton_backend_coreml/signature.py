"""A Core ML model's inputs, outputs, states and classifier labels, read from its spec.

The spec (protobuf) is readable on any OS: ``coremltools.utils.load_spec`` reads a
.mlmodel file or a .mlpackage folder. ML programs leave output shapes out of the
description; they are read from the program's main function (the op that produces each
output). Neural networks may leave output shapes out entirely: such an output has an
unknown rank and its dims must come from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .dtypes import ARRAY_TYPES
from .images import ImageInfo
from .shapes import UNBOUNDED, ShapeRule

ARRAY = "array"
IMAGE = "image"
INT64 = "int64"
DOUBLE = "double"
STRING = "string"
DICTIONARY = "dictionary"

# Scalar features: Triton sees them as [1] tensors.
_SCALARS = {INT64: DataType.INT64, DOUBLE: DataType.FP64, STRING: DataType.BYTES}


@dataclass(frozen=True)
class TensorInfo:
    """One feature of the model, in Triton's terms."""

    name: str
    kind: str
    datatype: DataType | None
    """None: no Triton data type serves it (``unsupported`` says why)."""
    rule: ShapeRule | None = None
    """Multi-arrays with a known shape; None for other kinds or an unknown shape."""
    partial_dims: tuple[int, ...] | None = None
    """Multi-array dims when no rule is known (an ML program output whose sizes depend on its
    inputs: -1 where unknown); None: rank unknown too."""
    image: ImageInfo | None = None
    optional: bool = False
    unsupported: str = ""

    @property
    def dims(self) -> tuple[int, ...] | None:
        """Dims as Core ML states them (-1 where they vary); None when the rank is unknown."""
        if self.kind == ARRAY:
            if self.rule is not None:
                return self.rule.dims
            return self.partial_dims
        if self.kind == IMAGE:
            return None  # depends on the config's format (HWC / CHW)
        return (1,)


@dataclass(frozen=True)
class Classifier:
    label_output: str
    """predictedFeatureName: the top label (string or int64)."""
    probabilities_output: str
    """predictedProbabilitiesName: label -> probability (a dictionary)."""
    labels: tuple[str | int, ...]
    """In the model's order; empty when the spec does not list them."""


@dataclass
class Signature:
    model_type: str
    """The spec's model type (mlProgram, neuralNetwork, pipelineClassifier, ...)."""
    spec_version: int
    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)
    states: dict[str, TensorInfo] = field(default_factory=dict)
    classifier: Classifier | None = None

    @property
    def is_program(self) -> bool:
        return self.model_type == "mlProgram"


def load_spec(path: Path, model: str):
    """The protobuf spec of a .mlmodel or .mlpackage (any OS)."""
    import coremltools as ct

    try:
        return ct.utils.load_spec(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf, JSON (manifest) or I/O errors alike
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': coremltools cannot read the Core ML spec of "
            f"'{path}': {type(e).__name__}: {e}"
        ) from None


def read_signature(spec: Any, model: str, function_name: str = "") -> Signature:
    desc = spec.description
    function = function_name or desc.defaultFunctionName
    if desc.functions:
        chosen = [f for f in desc.functions if f.name == function]
        if not chosen:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': the Core ML model has no function "
                f"'{function}' (functions: {', '.join(f.name for f in desc.functions)})"
            )
        desc = chosen[0]
    model_type = spec.WhichOneof("Type") or ""
    program_types = _program_output_types(spec, function) if model_type == "mlProgram" else {}
    sig = Signature(model_type=model_type, spec_version=int(spec.specificationVersion))
    for fd in desc.input:
        sig.inputs[fd.name] = _feature(fd, None)
    for fd in desc.output:
        sig.outputs[fd.name] = _feature(fd, program_types.get(fd.name))
    for fd in getattr(desc, "state", []):
        arr = fd.type.stateType.arrayType
        dt = ARRAY_TYPES.get(_array_type_name(arr.dataType))
        sig.states[fd.name] = TensorInfo(fd.name, ARRAY, dt, rule=ShapeRule(tuple(arr.shape)))
    top = getattr(spec.description, "predictedFeatureName", "")
    probs = getattr(spec.description, "predictedProbabilitiesName", "")
    if top or probs:
        sig.classifier = Classifier(top, probs, tuple(_class_labels(spec)))
    return sig


def _array_type_name(value: int) -> str:
    from coremltools.proto import FeatureTypes_pb2

    try:
        return FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(value)
    except ValueError:
        return f"array data type {value}"


def _feature(fd: Any, program_type: Any) -> TensorInfo:
    t = fd.type
    which = t.WhichOneof("Type")
    optional = bool(t.isOptional)
    if which == "multiArrayType":
        arr = t.multiArrayType
        type_name = _array_type_name(arr.dataType)
        dt = ARRAY_TYPES.get(type_name)
        unsupported = "" if dt else f"multi-array element type {type_name}"
        rule = _array_rule(arr)
        partial = None
        if rule is None and program_type is not None:
            rule, partial = _program_rule(program_type)
        return TensorInfo(fd.name, ARRAY, dt, rule=rule, partial_dims=partial, optional=optional,
                          unsupported=unsupported)
    if which == "imageType":
        return _image_feature(fd.name, t.imageType, optional)
    if which == "int64Type":
        return TensorInfo(fd.name, INT64, DataType.INT64, optional=optional)
    if which == "doubleType":
        return TensorInfo(fd.name, DOUBLE, DataType.FP64, optional=optional)
    if which == "stringType":
        return TensorInfo(fd.name, STRING, DataType.BYTES, optional=optional)
    if which == "dictionaryType":
        # classifier probabilities: served as FP32 scores in label order
        return TensorInfo(fd.name, DICTIONARY, DataType.FP32, optional=optional)
    return TensorInfo(fd.name, which or "unknown", None, optional=optional,
                      unsupported=f"Core ML feature type '{which}'")


def _array_rule(arr: Any) -> ShapeRule | None:
    default = tuple(int(d) for d in arr.shape)
    flex = arr.WhichOneof("ShapeFlexibility")
    if flex == "enumeratedShapes" and arr.enumeratedShapes.shapes:
        shapes = tuple(tuple(int(d) for d in s.shape) for s in arr.enumeratedShapes.shapes)
        return ShapeRule(default or shapes[0], enumerated=shapes)
    if flex == "shapeRange" and arr.shapeRange.sizeRanges:
        ranges = tuple((int(r.lowerBound), int(r.upperBound) if r.upperBound >= 0 else UNBOUNDED)
                       for r in arr.shapeRange.sizeRanges)
        return ShapeRule(default or tuple(lo for lo, _ in ranges), ranges=ranges)
    if default:
        return ShapeRule(default)
    return None


def _image_feature(name: str, img: Any, optional: bool) -> TensorInfo:
    from coremltools.proto import FeatureTypes_pb2

    color = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(img.colorSpace)
    sizes: tuple[tuple[int, int], ...] = ()
    h_range = w_range = None
    flex = img.WhichOneof("SizeFlexibility")
    if flex == "enumeratedSizes":
        sizes = tuple((int(s.height), int(s.width)) for s in img.enumeratedSizes.sizes)
    elif flex == "imageSizeRange":
        r = img.imageSizeRange
        h_range = (int(r.heightRange.lowerBound), int(r.heightRange.upperBound))
        w_range = (int(r.widthRange.lowerBound), int(r.widthRange.upperBound))
    if color not in ("GRAYSCALE", "RGB", "BGR", "GRAYSCALE_FLOAT16"):
        return TensorInfo(name, IMAGE, None, optional=optional, unsupported=f"image color space {color}")
    info = ImageInfo(color, int(img.height), int(img.width), sizes, h_range, w_range)
    return TensorInfo(name, IMAGE, info.datatype, image=info, optional=optional)


# ML program: output shapes live in the main function's ops ----------------------------

def _program_output_types(spec: Any, function: str) -> dict[str, Any]:
    prog = spec.mlProgram
    fn = prog.functions.get(function or "main")
    if fn is None:
        return {}
    block = fn.block_specializations.get(fn.opset)
    if block is None:
        return {}
    wanted = set(block.outputs)
    found: dict[str, Any] = {}
    for op in block.operations:
        for out in op.outputs:
            if out.name in wanted:
                found[out.name] = out.type
    return found


def _program_rule(value_type: Any) -> tuple[ShapeRule | None, tuple[int, ...] | None]:
    if value_type.WhichOneof("type") != "tensorType":
        return None, None
    tt = value_type.tensorType
    dims = []
    for d in tt.dimensions:
        if d.WhichOneof("dimension") == "constant":
            dims.append(int(d.constant.size))
        else:
            dims.append(-1)
    if any(d == -1 for d in dims):
        return None, tuple(dims)
    return ShapeRule(tuple(dims)), None


# classifier labels -------------------------------------------------------------------

def _class_labels(spec: Any) -> list[str | int]:
    which = spec.WhichOneof("Type")
    if which == "mlProgram":
        return _program_labels(spec)
    if which == "pipelineClassifier":
        models = spec.pipelineClassifier.pipeline.models
        return _class_labels(models[-1]) if models else []
    body = getattr(spec, which) if which else None
    if body is None:
        return []
    for fname in ("stringClassLabels", "int64ClassLabels"):
        if fname in {f.name for f in body.DESCRIPTOR.fields} and body.HasField(fname):
            return list(getattr(body, fname).vector)
    return []


def _program_labels(spec: Any) -> list[str | int]:
    for fn in spec.mlProgram.functions.values():
        block = fn.block_specializations.get(fn.opset)
        if block is None:
            continue
        for op in block.operations:
            if op.type != "classify":
                continue
            for arg in op.inputs["classes"].arguments:
                if not arg.HasField("value"):
                    continue
                labels: list[str | int] = []
                for v in arg.value.immediateValue.list.values:
                    tensor = v.immediateValue.tensor
                    kind = tensor.WhichOneof("value")
                    labels.extend(getattr(tensor, kind).values if kind else [])
                return labels
    return []


def signature_from_config(config: Any) -> Signature:
    """A compiled .mlmodelc has no spec coremltools can read: its features are what the
    (complete) config says, all multi-arrays, shapes checked by Core ML itself."""
    sig = Signature(model_type="compiled", spec_version=0)
    for io in config.input:
        dims = io.reshape.shape if io.reshape is not None else io.dims
        sig.inputs[io.name] = TensorInfo(io.name, ARRAY, io.datatype, partial_dims=(-1,) * len(dims),
                                         optional=io.optional)
    for out in config.output:
        dims = out.reshape.shape if out.reshape is not None else out.dims
        sig.outputs[out.name] = TensorInfo(out.name, ARRAY, out.datatype, partial_dims=(-1,) * len(dims))
    return sig
