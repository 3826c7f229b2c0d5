"""Which Core ML model a version folder holds (Triton's default_model_filename rules).

- A config's ``default_model_filename`` names the model: a .mlpackage folder, a
  .mlmodel file or a compiled .mlmodelc folder; its suffix says which.
- Without one (the core fills in this backend's default, model.mlpackage), the
  version folder must hold exactly one of model.mlpackage, model.mlmodel, model.mlmodelc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_core.errors import TritonError

DEFAULT_MODEL_FILENAME = "model.mlpackage"
DEFAULT_NAMES = ("model.mlpackage", "model.mlmodel", "model.mlmodelc")

PACKAGE = "mlpackage"
SPEC_FILE = "mlmodel"
COMPILED = "mlmodelc"
FORMATS = (PACKAGE, SPEC_FILE, COMPILED)


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str

    @property
    def compiled(self) -> bool:
        return self.format == COMPILED


def _format_of(path: Path, model: str) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': '{path.name}' is not a Core ML model "
            "(expected a .mlpackage folder, a .mlmodel file or a compiled .mlmodelc folder)"
        )
    folder = fmt in (PACKAGE, COMPILED)
    if folder and not path.is_dir():
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': '{path}' must be a folder (a .{fmt} is a directory)"
        )
    if not folder and not path.is_file():
        raise TritonError.invalid_arg(f"unable to load model '{model}': '{path}' must be a file")
    return fmt


def find_model_file(version_path: Path, default_model_filename: str, model: str) -> ModelFile:
    named = default_model_filename.strip()
    if named and named != DEFAULT_MODEL_FILENAME:
        path = version_path / named
        if not path.exists():
            raise TritonError.unavailable(f"unable to find '{path}' for model '{model}'")
        return ModelFile(path, _format_of(path, model))
    present = [version_path / n for n in DEFAULT_NAMES if (version_path / n).exists()]
    if not present:
        raise TritonError.unavailable(
            f"unable to find a Core ML model for model '{model}' in '{version_path}' "
            f"(looked for {', '.join(DEFAULT_NAMES)}; set default_model_filename for another name)"
        )
    if len(present) > 1:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': '{version_path}' holds "
            f"{' and '.join(p.name for p in present)}; keep one, or name it with "
            "default_model_filename"
        )
    return ModelFile(present[0], _format_of(present[0], model))
