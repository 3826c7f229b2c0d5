"""Fixtures for the metal plugin's tests (helpers: metal_backend_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def mlx_thread_first() -> None:
    """Start the plugin's MLX thread before any test touches MLX, as a server process does:
    its streams then take the lowest indices, which files exported elsewhere name."""
    try:
        from triton_backend_metal.mlx import runtime

        runtime.run(lambda: None)
    except ImportError:  # pragma: no cover - mlx not installed
        pass
