"""What an exported function takes and returns, as written in its .mlxfn metadata.

``mx.export_function(..., metadata=...)`` stores a string with the function; the
exporter of this plugin (``triton_backend_metal.mlx.export.export_model``) writes
a JSON object there whose key ``"triton"`` holds the signature::

    {"triton": {"shapeless": true,
                "inputs":  [{"name": "INPUT0", "datatype": "FP32", "dims": [-1, 16]}],
                "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "dims": [-1, 16]}]}}

``dims`` are the function's full shapes; -1 marks a dimension that may vary (only
in shapeless exports). Other metadata (not JSON, or without ``"triton"``) is left
alone: the config must then list the inputs and outputs itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .dtypes import SUPPORTED

METADATA_KEY = "triton"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: DataType
    dims: tuple[int, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype.value, "dims": list(self.dims)}


@dataclass
class Signature:
    """Positional inputs and returned outputs, in the function's order."""

    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    shapeless: bool = False

    def can_batch(self) -> bool:
        return self.shapeless and all(
            len(t.dims) > 0 and t.dims[0] == -1 for t in (*self.inputs, *self.outputs)
        )

    def to_metadata(self) -> str:
        return json.dumps(
            {
                METADATA_KEY: {
                    "shapeless": self.shapeless,
                    "inputs": [t.to_json() for t in self.inputs],
                    "outputs": [t.to_json() for t in self.outputs],
                }
            }
        )


def _tensors(raw: object, kind: str, where: str) -> list[TensorSpec]:
    if not isinstance(raw, list):
        raise TritonError.invalid_arg(f"{where}: metadata '{kind}' must be a list")
    out = []
    for i, item in enumerate(raw):
        try:
            name = item["name"]
            dt = DataType.from_wire(item["datatype"])
            dims = tuple(int(d) for d in item["dims"])
        except (KeyError, TypeError, ValueError, TritonError) as e:
            raise TritonError.invalid_arg(
                f"{where}: metadata {kind}[{i}] must have a name, a datatype (one of "
                f"{', '.join(d.value for d in SUPPORTED)}) and dims ({e})"
            ) from None
        if not isinstance(name, str) or not name:
            raise TritonError.invalid_arg(f"{where}: metadata {kind}[{i}] has no name")
        if dt not in SUPPORTED:
            raise TritonError.invalid_arg(
                f"{where}: metadata {kind} '{name}' has datatype {dt.value}, which MLX cannot hold"
            )
        if any(d < -1 for d in dims):
            raise TritonError.invalid_arg(f"{where}: metadata {kind} '{name}' has invalid dims {list(dims)}")
        out.append(TensorSpec(name, dt, dims))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise TritonError.invalid_arg(f"{where}: metadata {kind} names repeat: {', '.join(names)}")
    return out


def from_metadata(text: str, where: str) -> Signature | None:
    """The signature in an .mlxfn's metadata; None when the metadata carries none."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or METADATA_KEY not in data:
        return None
    sig = data[METADATA_KEY]
    if not isinstance(sig, dict):
        raise TritonError.invalid_arg(f"{where}: metadata '{METADATA_KEY}' must be an object")
    return Signature(
        inputs=_tensors(sig.get("inputs"), "inputs", where),
        outputs=_tensors(sig.get("outputs"), "outputs", where),
        shapeless=bool(sig.get("shapeless", False)),
    )


def shape_text(dims: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"
