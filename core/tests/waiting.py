"""Waiting for a condition in tests: re-exported from triton_core.testing."""

from triton_core.testing import wait_until

__all__ = ["wait_until"]
