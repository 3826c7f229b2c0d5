"""The drivers' tuning (scheduling/driver.py), in one place.

Measured on 2-core machines (bench/README.md); none of it is part of the backend
contract, and a Server takes another policy (``Server(policy=...)``), as tests do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriverPolicy:
    # A loop driver's execute still unanswered after this long goes to a rescue thread:
    # it may be slow or hung, and the backend's own timeout handling needs a blocking wait.
    loop_patience_s: float = 0.02


DEFAULT_POLICY = DriverPolicy()
