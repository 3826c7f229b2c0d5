"""The ``mlx`` backend: exported MLX functions (``model.mlxfn``) as models."""
