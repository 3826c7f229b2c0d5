"""triton-conformance: the conformance suite of triton-core backends.

``triton conformance <backend>`` (or ``python -m triton_conformance <backend>``)
runs ``triton_conformance.suite`` with the pytest plugin ``triton_conformance.plugin``.
"""

__version__ = "0.1.0"
