"""The distributions' versions and ranges follow the ABI rule (docs/abi.md, "Distribution versions").

A core minor series (0.1.x) keeps one ABI major, so every range between the core and a
backend distribution admits the current series and stops before the next one.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "triton-core": ROOT / "core",
    "triton-backend-onnx": ROOT / "plugins/triton-backend-onnx",
    "triton-backend-python": ROOT / "plugins/triton-backend-python",
    "triton-backend-torch": ROOT / "plugins/triton-backend-torch",
    "triton-backend-coreml": ROOT / "plugins/triton-backend-coreml",
    "triton-backend-metal": ROOT / "plugins/triton-backend-metal",
    "triton-conformance": ROOT / "conformance",
    "triton-backend-numpyexpr": ROOT / "docs/examples/triton-backend-numpyexpr",
}
# the core's extras: one per backend distribution of plugins/
BACKEND_EXTRAS = {"onnx": "triton-backend-onnx", "python": "triton-backend-python",
                  "torch": "triton-backend-torch", "coreml": "triton-backend-coreml",
                  "metal": "triton-backend-metal"}


def _project(name: str) -> dict:
    return tomllib.loads((DISTRIBUTIONS[name] / "pyproject.toml").read_text())["project"]


def _version(name: str) -> Version:
    return Version(_project(name)["version"])


def _next_series(v: Version) -> Version:
    # 0.x: the minor is the series; from 1.0 on, the major
    return Version(f"0.{v.minor + 1}") if v.major == 0 else Version(f"{v.major + 1}")


def _package_version(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} has no __version__")


def _assert_series(req: Requirement, target: str, where: str) -> None:
    v = _version(target)
    assert req.specifier.contains(v, prereleases=True), f"{where}: {req} excludes {target} {v}"
    nxt = _next_series(v)
    assert not req.specifier.contains(nxt, prereleases=True), (
        f"{where}: {req} admits {target} {nxt}, a series with another ABI major")


def test_every_project_list_is_complete() -> None:
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    listed = {n for n in DISTRIBUTIONS if n.startswith("triton-backend-")} - {"triton-backend-numpyexpr"}
    assert plugins == listed
    assert set(BACKEND_EXTRAS.values()) == plugins


@pytest.mark.parametrize("name", [n for n in DISTRIBUTIONS if n != "triton-core"])
def test_distribution_requires_the_core_series(name: str) -> None:
    reqs = [Requirement(r) for r in _project(name)["dependencies"]]
    core = [r for r in reqs if r.name == "triton-core"]
    assert len(core) == 1, f"{name} must depend on triton-core once"
    _assert_series(core[0], "triton-core", name)


@pytest.mark.parametrize("extra", sorted(BACKEND_EXTRAS))
def test_core_extra_pulls_its_backend_series(extra: str) -> None:
    reqs = [Requirement(r) for r in _project("triton-core")["optional-dependencies"][extra]]
    assert reqs and all(r.name == BACKEND_EXTRAS[extra] for r in reqs)
    for r in reqs:
        _assert_series(r, BACKEND_EXTRAS[extra], f"triton-core[{extra}]")


def test_all_extra_names_every_backend_extra() -> None:
    (req,) = [Requirement(r) for r in _project("triton-core")["optional-dependencies"]["all"]]
    assert req.name == "triton-core" and req.extras == set(BACKEND_EXTRAS)


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_package_version_matches_the_distribution(name: str) -> None:
    inits = [p for p in DISTRIBUTIONS[name].glob("triton_*/__init__.py")
             if p.parent.name != "triton_python_backend_utils"]
    assert len(inits) == 1
    assert _package_version(inits[0]) == str(_version(name))
