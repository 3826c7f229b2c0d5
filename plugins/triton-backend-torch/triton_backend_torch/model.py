"""TorchModel: one loaded model version. Finds the model file, tells its format by content,
completes and checks the config, and makes what each instance runs."""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import torch

from triton_core import batch_io
from triton_core.abi import InstanceContext, Model, ModelContext
from triton_core.config import ModelConfig
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from . import programs, sequence, torchscript
from .devices import Placement
from .formats import ModelFormat, detect
from .inputs import bind_inputs
from .outputs import OutputSelector
from .params import TorchParameters
from .plugin import BACKEND_NAME, DEFAULT_MODEL_FILENAME
from .runner import Runner
from .threads import ThreadSettings

log = logging.getLogger("triton_backend_torch")

PT2_FILENAME = "model.pt2"
PYTHON_RUNTIME = "model.py"
PLATFORM_TORCHSCRIPT = "pytorch_libtorch"
PLATFORM_AOTI = "torch_aoti"
PLATFORM_EXPORT = "torch_export"  # not Triton's: it cannot serve ExportedPrograms
_FORMAT_PLATFORM = {
    ModelFormat.TORCHSCRIPT: PLATFORM_TORCHSCRIPT,
    ModelFormat.AOTI: PLATFORM_AOTI,
    ModelFormat.EXPORTED_PROGRAM: PLATFORM_EXPORT,
}


def find_model_file(ctx: ModelContext) -> Path:
    """The version's file: default_model_filename (model.pt); model.pt2 when model.pt is
    absent or the platform is torch_aoti and no file is named."""
    named = ctx.config.default_model_filename
    candidates = [named] if named and named != DEFAULT_MODEL_FILENAME else []
    if not candidates:
        first = PT2_FILENAME if ctx.config.platform == PLATFORM_AOTI else DEFAULT_MODEL_FILENAME
        candidates = [first, PT2_FILENAME if first == DEFAULT_MODEL_FILENAME else DEFAULT_MODEL_FILENAME]
    for c in candidates:
        path = ctx.version_path / c
        if path.is_file():
            return path
    raise TritonError.unavailable(
        f"unable to find '{ctx.version_path / candidates[0]}' for model instance '{ctx.name}'")


class TorchModel(Model):
    def __init__(self, ctx: ModelContext, threads: ThreadSettings, default_max_batch_size: int) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.version = ctx.version
        config: ModelConfig = ctx.config
        self.params = TorchParameters.from_config(config, self.name)
        threads.apply(self.name, self.params.intra_op_threads, self.params.inter_op_threads)
        self._shared: dict[str, object] = {}
        self._lock = threading.Lock()
        self._program = None
        self.signature: programs.ProgramSignature | None = None
        self.python_model = None

        if config.runtime == PYTHON_RUNTIME:
            from .pyruntime import PythonModule

            self.format = ModelFormat.PYTHON_RUNTIME
            self.python_model = PythonModule(ctx, self.params)
        elif config.runtime:
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': runtime '{config.runtime}' is not served by the "
                f"pytorch backend (it serves TorchScript / .pt2 files, or runtime \"{PYTHON_RUNTIME}\")")
        else:
            self.model_file = find_model_file(ctx)
            self.format = detect(self.model_file, self.name)
        log.info("model '%s': %s", self.name, self.format.value)

        if self.format is ModelFormat.EXPORTED_PROGRAM:
            self._program = programs.load_exported(self.model_file, self.name)
            self.signature = programs.exported_signature(self._program)
            if ctx.auto_complete:
                config = self.signature.autocomplete(config, self.name, default_max_batch_size)
            self._input_index = self.signature.validate(config, self.name)
        elif ctx.auto_complete and (not config.input or not config.output):
            missing = [k for k in ("input", "output") if not getattr(config, k)]
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': a {self.format.value} model needs its "
                f"{' and '.join(missing)} in config.pbtxt (it does not record tensor types and "
                "shapes; auto-complete is not supported for it, as in Triton)")
        if not config.backend:
            config.backend = BACKEND_NAME
        if not config.platform and self.format in _FORMAT_PLATFORM:
            config.platform = _FORMAT_PLATFORM[self.format]
        self.config = config
        self.output_names = [o.name for o in config.output] + [t.name for t in sequence.state_outputs(config)]
        self.instances: list = []

    # ------------------------------------------------------------------ instances
    def create_instance(self, ctx: InstanceContext):
        from .instance import TorchInstance

        inst = TorchInstance(self, ctx)
        self.instances.append(inst)
        return inst

    def check_device(self, placement: Placement) -> None:
        if placement.is_mps:
            fp64 = [io.name for io in (*self.config.input, *self.config.output)
                    if io.datatype is DataType.FP64]
            if fp64:
                raise TritonError.invalid_arg(
                    f"unable to load model '{self.name}': MPS has no float64; tensor(s) "
                    f"{', '.join(fp64)} are TYPE_FP64 (use KIND_CPU, or FP32)")

    def _shared_or(self, placement: Placement, load):
        """One loaded object per device when ENABLE_WEIGHT_SHARING, else one per instance."""
        if not self.params.weight_sharing:
            return load()
        key = str(placement.device)
        with self._lock:
            if key not in self._shared:
                self._shared[key] = load()
            else:
                log.info("model '%s': reusing the loaded model on %s", self.name, key)
            return self._shared[key]

    def runner(self, placement: Placement) -> Runner:
        extra = sequence.inputs(self.config)
        made = batch_io.batch_input_datatypes(self.config)  # batch inputs, after the others
        datatypes = ({io.name: io.datatype for io in self.config.input} | {t.name: t.datatype for t in extra}
                     | made)
        names = [io.name for io in self.config.input] + [t.name for t in extra] + list(made)
        if self.format is ModelFormat.TORCHSCRIPT:
            module = self._shared_or(placement, lambda: torchscript.load(
                self.model_file, placement, self.params.inference_mode, self.name))
            fn = torchscript.method(module, self.params.method, self.name)
            binding = bind_inputs(names, datatypes, torchscript.arguments(fn), self.name)
            selector = OutputSelector(self.output_names, self.name, keyed=torchscript.returns_dict(fn))
            return Runner(lambda feeds: binding.call(fn, feeds), selector, scripted=True)
        if self.format is ModelFormat.EXPORTED_PROGRAM:
            sig, index = self.signature, self._input_index

            def load_module():
                module = self._program.module()
                if placement.device is None or placement.device.type == "cpu":
                    return module
                # modules from one program share its Parameter objects: moving one moves all
                return copy.deepcopy(module).to(placement.device)

            module = self._shared_or(placement, load_module)
            selector = OutputSelector(self.output_names, self.name,
                                      keyed=sig.out_spec is not None and sig.out_spec.type is dict)
            return Runner(lambda feeds: sig.call(module, index, feeds), selector, scripted=False)
        if self.format is ModelFormat.AOTI:
            compiled = self._shared_or(placement, lambda: programs.load_aoti(
                self.model_file, placement.device, self.name))
            built_for = compiled.get_metadata().get("AOTI_DEVICE_KEY", "")
            want = placement.input_device.type
            if built_for and built_for != want:
                raise TritonError.invalid_arg(
                    f"unable to load model '{self.name}': the AOTInductor package was compiled for "
                    f"'{built_for}', this instance runs on '{want}'")
            sig = programs.aoti_signature(compiled.loader.get_call_spec())
            index = sig.validate(self.config, self.name)
            selector = OutputSelector(self.output_names, self.name,
                                      keyed=sig.out_spec is not None and sig.out_spec.type is dict)
            return Runner(lambda feeds: sig.call(compiled, index, feeds), selector, scripted=False)
        return self.python_model.runner(placement, self.config)

    def release(self, placement: Placement) -> None:
        if placement.is_cuda and self.params.cache_cleaning:
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.instances.clear()
        self._shared.clear()
        self._program = None
