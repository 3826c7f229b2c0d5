"""triton-backend-python: Triton's Python backend for triton-core.

``triton_backend_python.plugin`` is the entry point (server side);
``triton_python_backend_utils`` is the module model.py files import as pb_utils
(worker side, standard library and numpy only).
"""

__version__ = "0.1.0"
