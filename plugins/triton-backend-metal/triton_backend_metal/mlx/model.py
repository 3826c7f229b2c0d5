"""MlxModel: one loaded version of an exported MLX function (``model.mlxfn``).

Loading imports the function, reads its signature from the file's metadata where
the exporter wrote one (auto-complete and validation), then calls it once with
zeros shaped by the config: the function itself confirms the config's input
count, datatypes and shapes and its outputs' datatypes and shapes, and, for a
batching config, that the first dimension may vary.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from triton_core.abi import InstanceContext, Model, ModelContext
from triton_core.config import ModelConfig
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .autocomplete import DEFAULT_MAX_BATCH_SIZE, autocomplete, validate
from .dtypes import SUPPORTED
from .function import call, import_function
from .signature import Signature, from_metadata, shape_text

log = logging.getLogger("triton_backend_metal.mlx")

from ..names import MLX_FILE as DEFAULT_MODEL_FILENAME  # noqa: E402
from ..names import MLX_NAME as BACKEND_NAME  # noqa: E402, F401 (re-exported)
from ..names import MLX_PLATFORM as PLATFORM  # noqa: E402, F401


def find_model_file(ctx: ModelContext) -> Path:
    path = ctx.version_path / (ctx.config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if path.is_dir():
        path = path / DEFAULT_MODEL_FILENAME
    if not path.is_file():
        raise TritonError.unavailable(f"unable to find '{path}' for model '{ctx.name}'")
    return path


class MlxModel(Model):
    def __init__(self, ctx: ModelContext, backend_config: dict[str, str] | None = None) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.version = ctx.version
        self.backend_config = dict(backend_config or {})
        self.model_file = find_model_file(ctx)
        self.function, metadata = import_function(self.model_file, self.name)
        self.signature: Signature | None = from_metadata(metadata, f"model '{self.name}'")

        config: ModelConfig = ctx.config
        if self.signature is not None:
            if ctx.auto_complete:
                config = autocomplete(config, self.signature, self.name, self._default_max_batch_size())
            validate(config, self.signature, self.name)
        elif not (config.input and config.output):
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': '{self.model_file.name}' carries no signature "
                '(its metadata has no "triton" entry): list every input and output in config.pbtxt, '
                "inputs in the function's argument order and outputs in its return order, or export "
                "with triton_backend_metal.mlx.export.export_model"
            )
        self.config = config
        self._plan_positions()
        self.probe()
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

    def _plan_positions(self) -> None:
        cfg = self.config
        for io in (*cfg.input, *cfg.output):
            if io.data_type != "TYPE_INVALID" and io.datatype not in SUPPORTED:
                raise TritonError.invalid_arg(
                    f"unable to load model '{self.name}', '{io.name}' has datatype {io.data_type}, "
                    f"which MLX cannot hold (supported: {', '.join(d.config_name for d in SUPPORTED)})"
                )
        if self.signature is not None:
            self.input_order = [t.name for t in self.signature.inputs]
            self.output_count = len(self.signature.outputs)
            self.output_position = {t.name: i for i, t in enumerate(self.signature.outputs)}
        else:
            self.input_order = [i.name for i in cfg.input]
            self.output_count = len(cfg.output)
            self.output_position = {o.name: i for i, o in enumerate(cfg.output)}
        self.input_types = {i.name: i.datatype for i in cfg.input}
        self.output_types = {o.name: o.datatype for o in cfg.output}

    def output_type_list(self, names: list[str] | None = None) -> list[DataType | None]:
        """Datatypes by output position; None for outputs not wanted."""
        types: list[DataType | None] = [None] * self.output_count
        for name, pos in self.output_position.items():
            if name in self.output_types and (names is None or name in names):
                types[pos] = self.output_types[name]
        return types

    def _zeros(self, batch: int) -> list[tuple[np.ndarray, DataType]]:
        cfg = self.config
        out = []
        for name in self.input_order:
            io = cfg.input_by_name(name)
            dims = [1 if d == -1 else d for d in (io.reshape.shape if io.reshape is not None else io.dims)]
            shape = [batch, *dims] if cfg.max_batch_size > 0 else dims
            out.append((np.zeros(shape, io.datatype.numpy), io.datatype))
        return out

    def probe(self) -> None:
        """Call the function once (twice for a batching model) with zeros shaped by the config."""
        cfg = self.config
        prefix = f"unable to load model '{self.name}': the function does not accept the configured inputs"
        batches = (1, 2) if cfg.max_batch_size > 1 else (1,)
        for batch in batches:
            if batch == 2:
                prefix = (
                    f"unable to load model '{self.name}': max_batch_size is {cfg.max_batch_size} "
                    "but the function does not accept a batch of 2 (export it with shapeless=True)"
                )
            produced, _ = call(
                self.function, self._zeros(batch), [None] * self.output_count, "default", prefix
            )
            if len(produced) != self.output_count:
                raise TritonError.invalid_arg(
                    f"unable to load model '{self.name}': the function returns {len(produced)} arrays, "
                    f"the {'signature' if self.signature else 'configuration'} names {self.output_count}"
                )
            for io in cfg.output:
                p = produced[self.output_position[io.name]]
                if p.datatype is not io.datatype:
                    raise TritonError.invalid_arg(
                        f"unable to load model '{self.name}', configuration expects datatype "
                        f"{io.data_type} for output '{io.name}', the function returns {p.mlx_dtype}"
                    )
                dims = list(io.reshape.shape if io.reshape is not None else io.dims)
                want = [batch, *dims] if cfg.max_batch_size > 0 else dims
                got = list(p.shape)
                fits = len(got) == len(want) and all(
                    w == -1 or w == g for w, g in zip(want, got, strict=True)
                )
                if not fits and io.reshape is None:
                    raise TritonError.invalid_arg(
                        f"unable to load model '{self.name}', configuration expects output '{io.name}' "
                        f"of shape {shape_text(want)} for this probe, the function returns {shape_text(got)}"
                    )

    def create_instance(self, ctx: InstanceContext):
        from .instance import MlxInstance

        inst = MlxInstance(self, ctx)
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        self.instances.clear()
        self.function = None
