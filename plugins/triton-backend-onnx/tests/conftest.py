"""Puts the plugin and the core source trees on sys.path (when not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve()
for p in (_HERE.parent, _HERE.parents[1], _HERE.parents[3] / "core"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path
