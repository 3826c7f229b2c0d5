"""What a model file holds, told by its contents (the name does not say: Triton's
``model.pt2`` may be an AOTInductor package or a torch.export program).

All three are zip archives under one top folder:
- TorchScript (torch.jit.save): ``<top>/code/`` and ``<top>/constants.pkl``;
- ExportedProgram (torch.export.save): ``<top>/models/<name>.json`` (the serialized graph);
- AOTInductor package (aoti_compile_and_package): ``<top>/data/aotinductor/<name>/``
  holding the compiled shared library.
A package may hold both an AOTI model and an exported program; the compiled model wins.
"""

from __future__ import annotations

import zipfile
from enum import Enum
from pathlib import Path

from triton_core.errors import TritonError


class ModelFormat(Enum):
    TORCHSCRIPT = "TorchScript"
    EXPORTED_PROGRAM = "torch.export ExportedProgram"
    AOTI = "AOTInductor package"
    PYTHON_RUNTIME = "model.py runtime"


def detect(path: Path, model: str) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': '{path.name}' is not a PyTorch archive "
            f"(TorchScript, torch.export or AOTInductor): {e}") from None
    parts = [n.split("/") for n in names]
    if any(len(p) > 3 and p[1] == "data" and p[2] == "aotinductor" for p in parts):
        return ModelFormat.AOTI
    if any(len(p) > 2 and p[1] == "models" and p[2].endswith(".json") for p in parts):
        return ModelFormat.EXPORTED_PROGRAM
    if any(len(p) > 2 and p[1] == "code" for p in parts) and any(
            len(p) == 2 and p[1] == "constants.pkl" for p in parts):
        return ModelFormat.TORCHSCRIPT
    raise TritonError.invalid_arg(
        f"unable to load model '{model}': '{path.name}' is a zip archive but neither TorchScript "
        "(torch.jit.save), a torch.export program (torch.export.save) nor an AOTInductor package")
