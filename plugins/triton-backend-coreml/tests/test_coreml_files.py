"""Model file discovery (Triton's default_model_filename rules) and the compiled-copy cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from coreml_backend_helpers import NEEDS_MACOS, ON_MACOS

from triton_backend_coreml.compiled_cache import CompiledCache, default_root, fingerprint
from triton_backend_coreml.model_files import COMPILED, PACKAGE, SPEC_FILE, ModelFile, find_model_file
from triton_core.errors import ErrorCode, TritonError


def _version(tmp_path: Path) -> Path:
    v = tmp_path / "m" / "1"
    v.mkdir(parents=True)
    return v


@pytest.mark.parametrize("name, fmt", [("model.mlpackage", PACKAGE), ("model.mlmodel", SPEC_FILE),
                                       ("model.mlmodelc", COMPILED)])
def test_default_names(tmp_path, name, fmt):
    v = _version(tmp_path)
    (v / name).mkdir() if fmt != SPEC_FILE else (v / name).write_bytes(b"")
    # the core fills in the backend's default (model.mlpackage) when the config names none
    for configured in ("", "model.mlpackage"):
        found = find_model_file(v, configured, "m")
        assert found == ModelFile(v / name, fmt)


def test_two_default_models_are_ambiguous(tmp_path):
    v = _version(tmp_path)
    (v / "model.mlpackage").mkdir()
    (v / "model.mlmodel").write_bytes(b"")
    with pytest.raises(TritonError, match="holds model.mlpackage and model.mlmodel; keep one"):
        find_model_file(v, "", "m")


def test_default_model_filename_names_any_core_ml_model(tmp_path):
    v = _version(tmp_path)
    (v / "resnet.mlmodelc").mkdir()
    assert find_model_file(v, "resnet.mlmodelc", "m").format == COMPILED
    with pytest.raises(TritonError) as e:
        find_model_file(v, "other.mlpackage", "m")
    assert e.value.code is ErrorCode.UNAVAILABLE and "unable to find" in e.value.message


def test_wrong_kind_of_file(tmp_path):
    v = _version(tmp_path)
    (v / "model.onnx").write_bytes(b"")
    (v / "x.mlpackage").write_bytes(b"")
    with pytest.raises(TritonError, match="'model.onnx' is not a Core ML model"):
        find_model_file(v, "model.onnx", "m")
    with pytest.raises(TritonError, match="must be a folder"):
        find_model_file(v, "x.mlpackage", "m")


def test_nothing_to_load(tmp_path):
    v = _version(tmp_path)
    with pytest.raises(TritonError, match="looked for model.mlpackage, model.mlmodel, model.mlmodelc"):
        find_model_file(v, "", "m")


# compiled-copy cache -----------------------------------------------------------------

def test_the_compiled_path_is_stable_per_model_version_and_content(tmp_path, models):
    source = models["relu_range"] / "1" / "model.mlpackage"
    cache = CompiledCache(tmp_path / "c")
    first = cache.compiled_path("relu_range", 1, source)
    assert first == cache.compiled_path("relu_range", 1, source)  # a reload finds it again
    assert first.parent.parent == tmp_path / "c" / "relu_range" / "1"
    assert first.name == "model.mlmodelc"
    assert cache.compiled_path("relu_range", 2, source) != first


def test_a_changed_model_gets_a_new_fingerprint(tmp_path, models):
    copy = tmp_path / "copy.mlpackage"
    shutil.copytree(models["relu_range"] / "1" / "model.mlpackage", copy)
    before = fingerprint(copy)
    manifest = copy / "Manifest.json"
    st = manifest.stat()
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint(copy) != before


def test_a_compiled_source_is_used_as_is(tmp_path):
    compiled = tmp_path / "model.mlmodelc"
    compiled.mkdir()
    cache = CompiledCache(tmp_path / "c")
    assert cache.compiled("m", 1, ModelFile(compiled, COMPILED)) == compiled
    assert not (tmp_path / "c").exists()


def test_cache_root(monkeypatch, tmp_path, cache):
    monkeypatch.setenv("TRITON_COREML_CACHE", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    monkeypatch.delenv("TRITON_COREML_CACHE")
    assert default_root().parts[-2:] == ("triton-core", "coreml")
    backend_root = load_backend_root(tmp_path / "configured")
    assert backend_root == tmp_path / "configured"


def load_backend_root(root: Path) -> Path:
    from triton_backend_coreml.backend import CoreMLBackend
    from triton_core.abi import BackendContext

    return CoreMLBackend(BackendContext("coreml", {"cache-directory": str(root)})).cache.root


@pytest.mark.skipif(not ON_MACOS, reason=NEEDS_MACOS)
def test_compile_once_and_reuse(tmp_path, models):
    source = models["add_fixed"] / "1" / "model.mlpackage"
    cache = CompiledCache(tmp_path / "c")
    mf = ModelFile(source, PACKAGE)
    path = cache.compiled("add_fixed", 1, mf)
    assert path.is_dir() and path == cache.compiled_path("add_fixed", 1, source)
    mtime = path.stat().st_mtime_ns
    assert cache.compiled("add_fixed", 1, mf) == path and path.stat().st_mtime_ns == mtime
