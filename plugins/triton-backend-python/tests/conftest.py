"""Puts the plugin, the core and the core's test helpers on sys.path; builds servers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve()
ROOT = _HERE.parents[3]
for p in (_HERE.parent, _HERE.parents[1], ROOT / "core", ROOT / "core" / "tests",
          ROOT / "plugins" / "triton-backend-onnx"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

os.environ["TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # plugins are registered by make_server

MODELS = _HERE.parent / "models"
EXAMPLES = ROOT / "examples" / "model_repository"


def make_server(repo: Path, **kwargs):
    import triton_backend_python.plugin as python_plugin
    from triton_core import Server

    kwargs.setdefault("model_repository", [repo])
    server = Server(**kwargs)
    server.registry.register_plugin(python_plugin, "python")
    try:
        import triton_backend_onnx.plugin as onnx_plugin

        server.registry.register_plugin(onnx_plugin, "onnx")
    except ImportError:
        pass
    return server


def build_repo(dest: Path, names: list[str] | None = None) -> Path:
    for d in sorted(MODELS.iterdir()):
        if names is None or d.name in names:
            shutil.copytree(d, dest / d.name, ignore=shutil.ignore_patterns("__pycache__"))
    if names is None or "simple" in names:
        shutil.copytree(EXAMPLES / "simple", dest / "simple")
    return dest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path
