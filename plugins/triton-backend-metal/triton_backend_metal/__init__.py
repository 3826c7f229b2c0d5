"""Apple GPU backends for triton-core.

- ``mlx``: functions exported with ``mlx.core.export_function`` (``model.mlxfn``), run by
  MLX on the Apple GPU (macOS), the CPU (``mlx[cpu]``, Linux) or CUDA (MLX's CUDA build).
- ``metal``: Metal Shading Language compute kernels (``model.metal``) dispatched through
  ``metalcompute`` (macOS only).
"""

__version__ = "0.1.0"
