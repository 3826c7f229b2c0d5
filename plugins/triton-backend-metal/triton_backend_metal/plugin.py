"""The triton_core entry point: declares the ``mlx`` and ``metal`` backends."""

from __future__ import annotations

from triton_core.abi import BackendContext, BackendSpec, hookimpl

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
    try:
        import mlx.core as mx

        return f"MLX {mx.__version__}"
    except Exception:  # noqa: BLE001
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
    from .metal.model import BACKEND_NAME as METAL_NAME
    from .metal.model import DEFAULT_MODEL_FILENAME as METAL_FILE
    from .metal.model import PLATFORM as METAL_PLATFORM
    from .mlx.model import BACKEND_NAME as MLX_NAME
    from .mlx.model import DEFAULT_MODEL_FILENAME as MLX_FILE
    from .mlx.model import PLATFORM as MLX_PLATFORM

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
