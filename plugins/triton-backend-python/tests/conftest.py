"""Fixtures for the python backend's tests (helpers: python_backend_helpers, whose make_server
registers the plugins itself with entry points off)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path
