"""OnnxModel: one loaded model version. Finds the .onnx file, reads its signature,
auto-completes and validates the config, and creates instances."""

from __future__ import annotations

import logging
from pathlib import Path

from triton_core.abi import InstanceContext, Model, ModelContext
from triton_core.config import ModelConfig
from triton_core.errors import ErrorCode, TritonError

from . import errors
from .autocomplete import DEFAULT_MAX_BATCH_SIZE, Signature, autocomplete, validate
from .providers import is_strict
from .session_options import SessionSettings

log = logging.getLogger("triton_backend_onnx")

from .names import BACKEND_NAME, DEFAULT_MODEL_FILENAME, PLATFORM  # noqa: E402, F401


def find_model_file(ctx: ModelContext) -> Path:
    """<model>/<version>/<default_model_filename or model.onnx>; a folder holds model.onnx."""
    path = ctx.version_path / (ctx.config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if path.is_dir():
        path = path / DEFAULT_MODEL_FILENAME
    if not path.is_file():
        raise TritonError.unavailable(f"unable to find '{path}' for model '{ctx.name}'")
    return path


def read_signature(path: Path, model: str) -> Signature:
    """Open a CPU session without graph optimisation just to read inputs and outputs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any ORT failure is a load failure
        raise errors.from_ort(
            e,
            f"unable to load model '{model}': onnxruntime cannot read '{path}'",
            ErrorCode.INVALID_ARG,
        ) from None
    try:
        return Signature.from_session(session)
    finally:
        del session


class OnnxModel(Model):
    def __init__(
        self,
        ctx: ModelContext,
        backend_config: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.version = ctx.version
        self.backend_config = dict(backend_config or {})
        self.model_file = find_model_file(ctx)
        self.signature = read_signature(self.model_file, self.name)

        config: ModelConfig = ctx.config
        if ctx.auto_complete:
            config = autocomplete(config, self.signature, self.name, self._default_max_batch_size())
            # As Triton's core does for this backend: both names filled in.
            config.name = config.name or self.name
            config.backend = config.backend or BACKEND_NAME
            config.platform = config.platform or PLATFORM
        validate(config, self.signature, self.name)
        self.config = config

        self.session_settings = SessionSettings.from_config(config, self.name)
        self.strict_providers = is_strict(config, self.name, self.backend_config)
        self.instances: list = []

    def _default_max_batch_size(self) -> int:
        raw = self.backend_config.get("default-max-batch-size")
        if raw is None:
            return DEFAULT_MAX_BATCH_SIZE
        try:
            return int(raw)
        except ValueError:
            raise TritonError.invalid_arg(
                f"backend config 'default-max-batch-size' must be an integer, got '{raw}'"
            ) from None

    def create_instance(self, ctx: InstanceContext):
        from .instance import OnnxInstance

        inst = OnnxInstance(self, ctx)
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        self.instances.clear()
