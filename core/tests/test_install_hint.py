"""Install hints name what works for how triton-core was installed: the clone's folders while
the distributions are not on a registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import triton_core.install_hint as hint

REPO = Path(hint.__file__).resolve().parents[2]


class _Dist:
    def __init__(self, direct_url: dict | None):
        self.direct_url = direct_url

    def read_text(self, name):
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url else None


def _installed(monkeypatch, direct_url):
    monkeypatch.setattr(hint.md, "distribution", lambda name: _Dist(direct_url))


def test_a_clone_installed_with_pip_gets_its_folders(monkeypatch):
    _installed(monkeypatch, {"url": (REPO / "core").as_uri(), "dir_info": {}})
    assert hint.pip_install("triton-conformance") == \
        f"{sys.executable} -m pip install {REPO / 'conformance'}"


def test_an_editable_install_gets_editable_folders(monkeypatch):
    _installed(monkeypatch, {"url": (REPO / "core").as_uri(), "dir_info": {"editable": True}})
    assert hint.pip_install("triton-backend-onnx") == \
        f"{sys.executable} -m pip install -e {REPO / 'plugins' / 'triton-backend-onnx'}"


def test_a_backend_hint_only_for_a_distribution_not_installed(monkeypatch):
    _installed(monkeypatch, {"url": (REPO / "core").as_uri(), "dir_info": {}})
    monkeypatch.setattr(hint, "_installed", lambda dist: False)
    assert hint.for_backend("onnxruntime") == (f" (it is in triton-backend-onnx: {sys.executable} -m pip "
                                               f"install {REPO / 'plugins' / 'triton-backend-onnx'})")
    monkeypatch.setattr(hint, "_installed", lambda dist: True)  # installed, yet failed: said elsewhere
    assert hint.for_backend("onnxruntime") == ""


def test_a_folder_the_clone_lacks_gives_no_hint(monkeypatch):
    _installed(monkeypatch, {"url": (REPO / "core").as_uri(), "dir_info": {}})
    monkeypatch.setitem(hint.SOURCE_FOLDERS, "triton-backend-x", "plugins/triton-backend-x")
    assert hint.pip_install("triton-backend-x") is None
    assert hint.for_backend("no-such-backend") == ""


def test_a_registry_install_gets_the_distribution_name(monkeypatch, tmp_path):
    _installed(monkeypatch, None)
    monkeypatch.setattr(hint, "__file__", str(tmp_path / "site-packages" / "triton_core" / "x.py"))
    assert hint.pip_install("triton-conformance") == f"{sys.executable} -m pip install triton-conformance"
