"""Builds triton-core's C layer (triton_core/_native) with the machine's C compiler.

All metadata lives in pyproject.toml; this file only adds the cffi extension.
"""

from setuptools import setup

setup(
    cffi_modules=["triton_core/memory/_native/build.py:ffibuilder"],
    # cffi compiles against the limited API (an .abi3.so): one wheel for CPython 3.11 and later
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
