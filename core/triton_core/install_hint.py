"""The `pip install` command for one of this project's distributions, as the user installed ours.

The distributions are not on a package registry yet: they install from a clone of the
repository (`pip install ./core ./plugins/triton-backend-onnx`). A hint saying
`pip install triton-conformance` would fail, so the hint names the folder in the clone
triton-core came from: pip records it in the installed distribution's `direct_url.json`
(PEP 610); a source tree on PYTHONPATH is its own clone. Only where triton-core came from
a registry does the hint name the distribution.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

# Folder of each distribution in the repository, relative to its root.
SOURCE_FOLDERS = {
    "triton-core": "core",
    "triton-conformance": "conformance",
    "triton-backend-onnx": "plugins/triton-backend-onnx",
    "triton-backend-python": "plugins/triton-backend-python",
    "triton-backend-torch": "plugins/triton-backend-torch",
    "triton-backend-coreml": "plugins/triton-backend-coreml",
    "triton-backend-metal": "plugins/triton-backend-metal",
}

# Triton's backend and platform names -> the distribution serving them.
BACKEND_DISTRIBUTIONS = {
    "onnxruntime": "triton-backend-onnx",
    "onnxruntime_onnx": "triton-backend-onnx",
    "python": "triton-backend-python",
    "pytorch": "triton-backend-torch",
    "pytorch_libtorch": "triton-backend-torch",
    "coreml": "triton-backend-coreml",
    "metal": "triton-backend-metal",
}


@dataclass(frozen=True)
class CoreOrigin:
    """Where triton-core came from: a clone of the repository (its root) or a registry."""

    repository: Path | None
    editable: bool = False


def core_origin() -> CoreOrigin:
    try:
        dist = md.distribution("triton-core")
    except md.PackageNotFoundError:
        dist = None
    here = Path(__file__).resolve().parent  # .../core/triton_core in a clone
    if dist is not None:
        text = dist.read_text("direct_url.json")
        if text:
            info = json.loads(text)
            url = urlparse(info.get("url", ""))
            if url.scheme == "file":
                core = Path(unquote(url.path))
                if (core.parent / "core" / "pyproject.toml").is_file():
                    return CoreOrigin(core.parent, bool(info.get("dir_info", {}).get("editable")))
        if not (here.parent / "pyproject.toml").is_file():
            return CoreOrigin(None)  # a wheel from a registry or a file
    if (here.parent / "pyproject.toml").is_file() and here.parent.name == "core":
        return CoreOrigin(here.parent.parent, editable=True)  # running from the source tree
    return CoreOrigin(None)


def pip_install(*distributions: str) -> str | None:
    """`python -m pip install ...` for these distributions, or None when one cannot be found
    (triton-core from a clone that lacks the distribution's folder)."""
    origin = core_origin()
    targets: list[str] = []
    for name in distributions:
        folder = SOURCE_FOLDERS.get(name)
        if origin.repository is None or folder is None:
            targets.append(name)
            continue
        path = origin.repository / folder
        if not (path / "pyproject.toml").is_file():
            return None
        targets.extend(["-e", str(path)] if origin.editable else [str(path)])
    return f"{sys.executable} -m pip install {' '.join(targets)}"


def _installed(distribution: str) -> bool:
    try:
        md.distribution(distribution)
    except md.PackageNotFoundError:
        return False
    return True


def for_backend(name: str) -> str:
    """' (it is in DIST: pip install ...)' for one of this project's backends or platforms whose
    distribution is not installed, else '' (an installed one that failed says why elsewhere)."""
    dist = BACKEND_DISTRIBUTIONS.get(name)
    command = pip_install(dist) if dist and not _installed(dist) else None
    return f" (it is in {dist}: {command})" if command else ""
