"""CoreMLModel: one loaded model version. Finds the model, reads its spec, auto-completes
and validates the config, and creates instances (macOS only)."""

from __future__ import annotations

import logging
from pathlib import Path

from triton_core.abi import InstanceContext, Model, ModelContext
from triton_core.config import ModelConfig
from triton_core.errors import TritonError

from . import params
from .autocomplete import DEFAULT_MAX_BATCH_SIZE, autocomplete, batch_mode, validate
from .compiled_cache import CompiledCache
from .compute_units import ExecutionSettings
from .feeds import FeedBuilder
from .images import channel_order
from .model_files import ModelFile, find_model_file
from .names import BACKEND_NAME, PLATFORM
from .runtime import unavailable_reason
from .signature import Signature, load_spec, read_signature, signature_from_config

log = logging.getLogger("triton_backend_coreml")


class CoreMLModel(Model):
    def __init__(self, ctx: ModelContext, cache: CompiledCache, default_max_batch_size: int) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.version = ctx.version
        self.cache = cache
        config: ModelConfig = ctx.config
        self.model_file: ModelFile = find_model_file(ctx.version_path, config.default_model_filename,
                                                     self.name)
        function = config.parameter("function_name") or ""
        self.signature: Signature | None = None  # None until known (a compiled model: from the config)
        if not self.model_file.compiled:
            spec = load_spec(self.model_file.path, self.name)
            self.signature = read_signature(spec, self.name, function)
        if ctx.auto_complete:
            if self.signature is not None:
                config = autocomplete(config, self.signature, self.name, default_max_batch_size,
                                      labels_file=self._labels_file)
            config.name = config.name or self.name
            config.backend = config.backend or BACKEND_NAME
            config.platform = config.platform or PLATFORM
        if self.signature is not None:
            validate(config, self.signature, self.name)
        else:
            _require_complete(config, self.name, self.model_file.path)
            self.signature = signature_from_config(config)
        params.warn_unknown(config, self.name)
        self.settings = ExecutionSettings.from_config(config, self.name)
        self.channel_order = channel_order(config.parameter("image_channel_order"), self.name)
        self.function_name = function
        self.batch_mode = batch_mode(config, self.signature)
        self.config = config
        self.instances: list = []

    def _labels_file(self) -> str:
        assert self.signature is not None and self.signature.classifier is not None
        return str(self.cache.labels_file(self.name, self.version, self.model_file.path,
                                          self.signature.classifier.labels))

    def read_labels(self, label_filename: str) -> list[str]:
        """A config label file (relative to the model folder, as Triton reads it)."""
        path = self.ctx.model_path / label_filename
        try:
            return path.read_text().splitlines()
        except OSError as e:
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': cannot read label file '{path}': {e.strerror}"
            ) from None

    def feed_builder(self) -> FeedBuilder:
        """How requests become Core ML inputs and its results tensors (any OS)."""
        assert self.signature is not None
        return FeedBuilder(self.name, self.version, self.config, self.signature, self.batch_mode,
                           self.channel_order, self.read_labels)

    def create_instance(self, ctx: InstanceContext):
        reason = unavailable_reason()
        if reason:
            raise TritonError.unavailable(f"unable to load model '{self.name}': {reason}")
        from .instance import CoreMLInstance

        inst = CoreMLInstance(self, ctx)
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        self.instances.clear()


def _require_complete(config: ModelConfig, model: str, path: Path) -> None:
    """A compiled .mlmodelc carries no spec coremltools can read: the config must say it all."""
    where = f"unable to load model '{model}'"
    if not config.input or not config.output:
        raise TritonError.invalid_arg(
            f"{where}: '{path.name}' is a compiled Core ML model, whose inputs and outputs cannot "
            "be read without Core ML: list every input and output in the configuration (or serve "
            "the .mlpackage / .mlmodel instead)")
    for io in [*config.input, *config.output]:
        if io.data_type == "TYPE_INVALID" or (not io.dims and io.reshape is None):
            raise TritonError.invalid_arg(
                f"{where}: '{io.name}' needs data_type and dims in the configuration ('{path.name}' "
                "is a compiled Core ML model)")


__all__ = ["BACKEND_NAME", "CoreMLModel", "DEFAULT_MAX_BATCH_SIZE", "PLATFORM"]
