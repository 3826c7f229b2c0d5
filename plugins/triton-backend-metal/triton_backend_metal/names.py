"""The two backends' names, importable without MLX or Metal (the plugin registers with them)."""

MLX_NAME = "mlx"
MLX_PLATFORM = "mlx_mlxfn"
MLX_FILE = "model.mlxfn"
METAL_NAME = "metal"
METAL_PLATFORM = "metal_kernel"
METAL_FILE = "model.metal"
