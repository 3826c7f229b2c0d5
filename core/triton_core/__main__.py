"""``python -m triton_core``: the same as ``tritonserver``."""

from .launcher import tritonserver_main

tritonserver_main()
