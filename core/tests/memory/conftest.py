"""Tests of the C layer run against this checkout, building the extension in place if needed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2]
if str(CORE) not in sys.path:
    sys.path.insert(0, str(CORE))

if importlib.util.find_spec("triton_core.memory._native._triton_native") is None:
    # A fresh checkout: compile once (a few seconds) rather than skip every test.
    subprocess.run(
        [sys.executable, "triton_core/memory/_native/build.py"], cwd=CORE, check=True
    )


@pytest.fixture
def shm_key() -> Iterator[str]:
    """A unique key; the object is unlinked afterwards if a test left it behind."""
    from triton_core.memory import shm

    key = f"tc_test_{uuid.uuid4().hex[:12]}"
    yield key
    for name in shm.client_key_candidates(key):
        try:
            shm.unlink(name, os_rules=False)
        except OSError:
            pass
