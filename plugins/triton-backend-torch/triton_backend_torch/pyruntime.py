"""Triton's PyTorch python runtime (``backend: "pytorch"``, ``runtime: "model.py"``).

As Triton's runtime (pytorch_backend src/model.py) does:
- the version folder holds ``model.py`` (or the ``.py`` file ``default_model_filename``
  names); the model is a ``torch.nn.Module`` subclass in it,
  built without arguments, with weights from ``model.pt`` beside it (a state_dict) when
  present;
- it is wrapped in ``torch.compile`` with the JSON keyword arguments of the parameter
  ``TORCH_COMPILE_OPTIONAL_PARAMETERS`` (``{"disable": true}`` runs it eagerly);
- ``NUM_THREADS`` / ``NUM_INTEROP_THREADS`` set torch's thread pools, and default to 1 here;
- inputs are passed positionally in config order; outputs are the result's elements in
  config order (or by the names of outputs.py).
One deliberate difference: Triton takes the alphabetically first Module subclass visible in
the file, which may be an imported one; this takes the first class *defined* in model.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from triton_core import batch_io
from triton_core.abi import ModelContext
from triton_core.config import ModelConfig
from triton_core.errors import TritonError

from .devices import Placement
from .outputs import OutputSelector
from .params import TorchParameters
from .runner import Runner

SOURCE = "model.py"
WEIGHTS = "model.pt"


def _import(path: Path, unique: str):
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise TritonError.invalid_arg(f"'{path}' cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is a load failure
        sys.modules.pop(unique, None)
        raise TritonError.invalid_arg(f"importing '{path}' failed: {type(e).__name__}: {e}") from None
    return module


def module_class(module, path: Path) -> type[torch.nn.Module]:
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, torch.nn.Module)
                and value.__module__ == module.__name__):
            return value
    raise TritonError.invalid_arg(f"'{path}' defines no subclass of torch.nn.Module")


class PythonModule:
    """The model.py runtime of one model version."""

    def __init__(self, ctx: ModelContext, params: TorchParameters) -> None:
        self.name = ctx.name
        self.params = params
        if params.compile_options is not None and "model" in params.compile_options:
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': 'model' is not an optional parameter for "
                "'torch.compile'")
        named = ctx.config.default_model_filename
        self.source = ctx.version_path / (named if named.endswith(".py") else SOURCE)
        if not self.source.is_file():
            raise TritonError.unavailable(
                f"unable to find '{self.source}' for model instance '{self.name}' (runtime "
                f"\"{SOURCE}\")")
        unique = f"triton_torch_model_{self.name}_{ctx.version}_{id(self)}"
        self.module = _import(self.source, unique)
        self.cls = module_class(self.module, self.source)
        weights = ctx.version_path / WEIGHTS
        self.weights = weights if weights.is_file() else None

    def build(self, device: torch.device | None) -> torch.nn.Module:
        try:
            net = self.cls()
        except Exception as e:  # noqa: BLE001
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': {self.cls.__name__}() failed: "
                f"{type(e).__name__}: {e}") from None
        if self.weights is not None:
            try:
                state = torch.load(self.weights, map_location=device or "cpu", weights_only=True)
                net.load_state_dict(state)
            except Exception as e:  # noqa: BLE001
                raise TritonError.invalid_arg(
                    f"unable to load model '{self.name}': the weights in '{self.weights.name}' do not "
                    f"load into {self.cls.__name__}: {type(e).__name__}: {e}") from None
        if device is not None:
            net = net.to(device)
        return net.eval()

    def runner(self, placement: Placement, config: ModelConfig) -> Runner:
        net = self.build(placement.device)
        try:
            compiled = torch.compile(net, **(self.params.compile_options or {}))
        except Exception as e:  # noqa: BLE001 - bad torch.compile arguments
            raise TritonError.invalid_arg(
                f"unable to load model '{self.name}': torch.compile({self.params.compile_options}) "
                f"failed: {type(e).__name__}: {e}") from None
        order = [io.name for io in config.input] + list(batch_io.batch_input_datatypes(config))
        selector = OutputSelector([o.name for o in config.output], self.name)

        def call(feeds: dict[str, object]) -> object:
            return compiled(*[feeds[n] for n in order if n in feeds])

        return Runner(call, selector, scripted=False)
