"""Importing what the server will need next while it waits for something else.

The models load first and mostly wait (a python backend's worker starting, a framework
reading its model); the front ends are imported only after, before the first request is
answered. Importing them on a thread during the load takes their import time (some 50 ms,
gRPC's generated messages most of it) off the time to ready.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable


def import_in_background(modules: Iterable[str]) -> threading.Thread:
    """Starts importing ``modules`` (absolute names) on a daemon thread and returns it.

    A module that fails to import is left alone: the import where it is used raises the
    same error there, where it is reported (a failed import leaves nothing in sys.modules).
    """
    names = list(modules)

    def run() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S110 - raised again by the import where it is used
                pass

    t = threading.Thread(target=run, name="prefetch-imports", daemon=True)
    t.start()
    return t
