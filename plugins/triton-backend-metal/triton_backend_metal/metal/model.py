"""MetalModel: one loaded version of a kernel model (``model.metal``).

Loading reads the source, finds the kernel, fills a tensor's missing ``data_type``
from the buffer it binds to, checks the kernel's signature against the config and
builds the launch plan (launch.py): all of it without Metal, so a
model's mistakes show on any OS. Instances compile the kernel (on macOS).
"""

from __future__ import annotations

from pathlib import Path

from triton_core.abi import InstanceContext, Model, ModelContext
from triton_core.errors import TritonError

from ..names import METAL_FILE as DEFAULT_MODEL_FILENAME  # noqa: E402
from ..names import METAL_NAME as BACKEND_NAME  # noqa: E402, F401 (re-exported)
from ..names import METAL_PLATFORM as PLATFORM  # noqa: E402, F401
from .launch import fill_datatypes, plan
from .msl import MslError, find_kernel


def find_model_file(ctx: ModelContext) -> Path:
    path = ctx.version_path / (ctx.config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if path.is_dir():
        path = path / DEFAULT_MODEL_FILENAME
    if not path.is_file():
        raise TritonError.unavailable(f"unable to find '{path}' for model '{ctx.name}'")
    return path


class MetalModel(Model):
    def __init__(self, ctx: ModelContext, engine_type: type, engine_provider=None) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.version = ctx.version
        self.config = ctx.config
        self.model_file = find_model_file(ctx)
        try:
            self.source = self.model_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': {self.model_file.name} is not UTF-8 text ({e})"
            ) from None
        try:
            self.kernel = find_kernel(self.source, self.config.parameter("kernel"), self.model_file.name)
        except MslError as e:
            raise TritonError.invalid_arg(f"unable to load model '{self.name}': {e}") from None
        if not (self.config.input and self.config.output):
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': a kernel model's configuration lists its "
                "inputs and outputs (they bind to the kernel's buffers in that order)"
            )
        if ctx.auto_complete:
            self.config = fill_datatypes(self.kernel, self.config)
        self.plan = plan(self.kernel, self.config, self.name, self.model_file.name)
        self._check_engine(engine_type)
        self.engine_provider = engine_provider
        self.instances: list = []

    def _check_engine(self, engine_type: type) -> None:
        p = self.plan
        if p.grid is not None and p.grid.arity > engine_type.max_grid_dims:
            raise TritonError.unsupported(
                f"unable to load model '{self.name}': parameter 'grid' has {p.grid.arity} dimensions; "
                f"the {engine_type.name} engine dispatches {engine_type.max_grid_dims}-D grids only "
                "(flatten the index in the kernel)"
            )
        if p.threadgroup is not None and not engine_type.sets_threadgroup_size:
            raise TritonError.unsupported(
                f"unable to load model '{self.name}': parameter 'threadgroup_size' cannot be honoured: "
                f"the {engine_type.name} engine lets Metal choose the threadgroup size"
            )

    def create_instance(self, ctx: InstanceContext):
        from .instance import MetalInstance

        if self.engine_provider is None:
            raise TritonError.unavailable(f"model '{self.name}': no Metal engine here")
        inst = MetalInstance(self, ctx, self.engine_provider())
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        self.instances.clear()
