"""Where Core ML can run: the one place that decides, with the reason when it cannot."""

from __future__ import annotations

import platform
import sys

NEEDS_MACOS = "Core ML prediction needs macOS"


def unavailable_reason() -> str | None:
    """None when Core ML predictions can run here, else why not."""
    if sys.platform != "darwin":
        return (f"{NEEDS_MACOS} (this is {sys.platform}); `triton check` still reads, validates "
                "and auto-completes Core ML models here")
    try:
        import coremltools  # noqa: F401
        from coremltools.models import _compiled_model  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return f"coremltools cannot be imported: {type(e).__name__}: {e}"
    from coremltools.models.model import _MLModelProxy

    if _MLModelProxy is None:
        return ("coremltools has no Core ML bridge for this Python "
                f"({platform.python_version()}, {platform.machine()}): install a coremltools wheel "
                "built for it")
    return None


def coremltools_version() -> str:
    try:
        import importlib.metadata as md

        return md.version("coremltools")
    except Exception:  # noqa: BLE001
        return "not installed"
