"""Run a Server's HTTP front end on a free port: re-exported from triton_core.testing."""

from triton_core.testing import free_port, serving_http

__all__ = ["free_port", "serving_http"]
