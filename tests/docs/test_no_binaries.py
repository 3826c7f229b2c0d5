"""Keeps build outputs and downloaded binaries out of the repository.

A binary is a tracked file whose first 8 KiB hold a NUL byte. The only ones allowed are
the example models (examples/build_models.py writes them; the README serves them), each
small. Anything else belongs in a package registry or is built on the user's machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_BINARIES = ("examples/model_repository/",)
MAX_BINARY_BYTES = 64 * 1024


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def _is_binary(path: Path) -> bool:
    with path.open("rb") as f:
        return b"\0" in f.read(8192)


def test_no_binary_files_are_tracked():
    offenders = []
    for rel in _tracked_files():
        path = ROOT / rel
        if not path.is_file() or not _is_binary(path):
            continue
        if not rel.startswith(ALLOWED_BINARIES):
            offenders.append(f"{rel}: binary file")
        elif path.stat().st_size > MAX_BINARY_BYTES:
            offenders.append(f"{rel}: {path.stat().st_size} bytes (example models stay under "
                             f"{MAX_BINARY_BYTES})")
    assert not offenders, "binary files in the repository (remove them, build or download them "\
        "instead):\n" + "\n".join(offenders)
