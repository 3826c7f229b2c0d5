"""Servers for the python backend's tests: the plugin (and the onnx one, when installed)
registered through triton_core.testing.make_server, over copies of the test models."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from triton_core import testing

_HERE = Path(__file__).resolve()
ROOT = _HERE.parents[3]
MODELS = _HERE.parent / "models"
EXAMPLES = ROOT / "examples" / "model_repository"


def make_server(repo: Path, **kwargs):
    """A Server (not started) over ``repo`` with the python backend, and the onnx backend when
    it is installed (some test models are onnx), registered; no entry point loaded."""
    import triton_backend_python.plugin as python_plugin

    plugins: list = [python_plugin]
    try:
        import triton_backend_onnx.plugin as onnx_plugin

        plugins.append(onnx_plugin)
    except ImportError:
        pass
    return testing.make_server(repo, *plugins, **kwargs)


def build_repo(dest: Path, names: list[str] | None = None) -> Path:
    for d in sorted(MODELS.iterdir()):
        if names is None or d.name in names:
            shutil.copytree(d, dest / d.name, ignore=shutil.ignore_patterns("__pycache__"))
    if names is None or "simple" in names:
        shutil.copytree(EXAMPLES / "simple", dest / "simple")
    return dest


def ready(url: str) -> bool:
    """Whether the server at ``url`` answers ready."""
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False
