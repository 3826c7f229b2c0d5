"""The compiled copy of a model, kept at a stable path per model version.

Core ML runs compiled models (.mlmodelc). Compiling a large .mlpackage takes seconds
(Apple's WWDC23 session measures 14.7 s for a first load and 0.1 s for a cached one),
so the compiled folder is kept in

    <cache root>/<model>/<version>/<fingerprint>/model.mlmodelc

where the fingerprint covers the source's file names, sizes and modification times:
a reload of an unchanged model reuses the folder, a changed model gets a new one (older
fingerprints of that version are removed). The cache root is the backend config
``cache-directory``, else ``$TRITON_COREML_CACHE``, else the user's cache folder
(~/Library/Caches/triton-core/coreml on macOS, $XDG_CACHE_HOME/triton-core/coreml).

Compiling is Core ML's own work (``coremltools.utils.compile_model``) and exists only
on macOS. A compilation goes to a temporary folder first and is renamed into place, so
a crash mid-compile never leaves a half-written model at the stable path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from triton_core.errors import TritonError

from .model_files import ModelFile

log = logging.getLogger("triton_backend_coreml")

COMPILED_NAME = "model.mlmodelc"


def default_root() -> Path:
    env = os.environ.get("TRITON_COREML_CACHE", "").strip()
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "triton-core" / "coreml"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "triton-core" / "coreml"


def fingerprint(source: Path) -> str:
    """A digest of the source's files (relative names, sizes, mtimes), stable across reloads."""
    h = hashlib.sha256()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for p in files:
        st = p.stat()
        rel = p.relative_to(source).as_posix() if source.is_dir() else p.name
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


class CompiledCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def version_dir(self, model: str, version: int) -> Path:
        return self.root / _safe(model) / str(version)

    def entry_dir(self, model: str, version: int, source: Path) -> Path:
        return self.version_dir(model, version) / fingerprint(source)

    def compiled_path(self, model: str, version: int, source: Path) -> Path:
        return self.entry_dir(model, version, source) / COMPILED_NAME

    def compiled(self, model: str, version: int, model_file: ModelFile) -> Path:
        """The compiled model to run: the source itself when it is compiled, else the cached copy
        (compiled now when missing; macOS only)."""
        if model_file.compiled:
            return model_file.path
        target = self.compiled_path(model, version, model_file.path)
        if target.is_dir():
            log.info("model '%s' version %d: using the compiled copy %s", model, version, target)
            return target
        self._compile(model, model_file.path, target)
        self._drop_stale(model, version, target.parent)
        return target

    def _compile(self, model: str, source: Path, target: Path) -> None:
        import coremltools as ct

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".compiling-", dir=target.parent))
        try:
            out = ct.utils.compile_model(str(source), destination_path=str(tmp / COMPILED_NAME))
            os.replace(out, target)
        except OSError as e:
            if target.is_dir():  # another instance compiled it first
                return
            raise TritonError.internal(
                f"unable to load model '{model}': cannot keep the compiled model at '{target}': {e}"
            ) from None
        except Exception as e:  # noqa: BLE001 - Core ML's compiler errors reach the user
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': Core ML cannot compile '{source}': "
                f"{type(e).__name__}: {e}"
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("model '%s': compiled %s to %s", model, source, target)

    def _drop_stale(self, model: str, version: int, keep: Path) -> None:
        folder = self.version_dir(model, version)
        for other in folder.iterdir():
            if other != keep and other.is_dir() and not other.name.startswith(".compiling-"):
                shutil.rmtree(other, ignore_errors=True)

    def labels_file(self, model: str, version: int, source: Path, labels: tuple) -> Path:
        """The classifier's labels, one a line, next to the compiled copy (the model repository
        may be read-only); the config's label_filename points here."""
        path = self.entry_dir(model, version, source) / "labels.txt"
        text = "".join(f"{label}\n" for label in labels)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".labels-{os.getpid()}.txt")
            tmp.write_text(text)
            os.replace(tmp, path)
        return path
