"""The triton_core entry point: declares the ``mlx`` and ``metal`` backends."""

from __future__ import annotations

import importlib.metadata as md

from triton_core.abi import BackendContext, BackendSpec, hookimpl

from .names import METAL_FILE, METAL_NAME, METAL_PLATFORM, MLX_FILE, MLX_NAME, MLX_PLATFORM

MLX = "mlx"
METAL = "metal"


def check_mlx() -> str | None:
    """None when MLX imports and has a device, else why not."""
    try:
        import mlx.core as mx
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return (
            f"mlx cannot be imported: {type(e).__name__}: {e} (on Linux install "
            "triton-backend-metal[cpu] for MLX's CPU build)"
        )
    if not (mx.is_available(mx.cpu) or mx.is_available(mx.gpu)):
        return "MLX reports neither a CPU nor a GPU device"
    return None


def _mlx_version() -> str:
    """From the package metadata: registering never imports MLX."""
    for dist in ("mlx", "mlx-cpu"):
        try:
            return f"MLX {md.version(dist)}"
        except md.PackageNotFoundError:
            continue
    return "MLX (not installed)"


def _mlx_factory(ctx: BackendContext):
    from .mlx.backend import MlxBackend

    return MlxBackend(ctx)


def _metal_factory(ctx: BackendContext):
    from .metal.backend import MetalBackend

    return MetalBackend(ctx)


def check_metal() -> str | None:
    from .metal.engine import engine_unavailable

    return engine_unavailable()


@hookimpl
def triton_backends():
    yield BackendSpec(
        name=MLX_NAME,
        platforms=(MLX_PLATFORM,),
        default_model_filename=MLX_FILE,
        abi=(1, 4),  # gather.run_each_on_failure
        factory=_mlx_factory,
        available=check_mlx,
        description=f"exported MLX functions ({_mlx_version()})",
    )
    yield BackendSpec(
        name=METAL_NAME,
        platforms=(METAL_PLATFORM,),
        default_model_filename=METAL_FILE,
        abi=(1, 4),  # gather.run_each_on_failure
        factory=_metal_factory,
        available=check_metal,
        description="Metal Shading Language compute kernels (metalcompute)",
    )


@hookimpl
def triton_conformance(backend_name: str):
    """The conformance suite's view of these backends."""
    if backend_name == MLX:
        from .mlx.conformance import conformance_spec

        return conformance_spec()
    if backend_name == METAL:
        from .metal.conformance import conformance_spec as metal_spec

        return metal_spec()
    return None
