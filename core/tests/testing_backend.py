"""A tiny backend plugin ("testadd") and a model repository for front-end tests.

Usage::

    from testing_backend import make_repository, plugin, running_server
    repo = make_repository(tmp_path)
    server = Server(model_repository=repo)
    server.registry.register_plugin(plugin, "testadd")   # before start()
    server.start()

Models written by ``make_repository``:

- ``simple``: INPUT0, INPUT1 INT32 [16], max_batch_size 8 -> OUTPUT0 = sum, OUTPUT1 = diff
  (Triton's ``simple``). An execution fails (BACKEND) when INPUT0 holds ``FAIL_VALUE``.
- ``simple_string``: BYTES identity, INPUT0 BYTES [-1], max_batch_size 8 -> OUTPUT0.
- ``classifier``: FP32 identity [4], max_batch_size 8, OUTPUT0 with label_filename labels.txt.
- ``slow``: like ``simple`` (no batching) but each execution sleeps ``SLOW_MS``.
"""

from __future__ import annotations

import time
import types
from pathlib import Path

import numpy as np

from triton_core import abi, testing
from triton_core.errors import TritonError
from triton_core.request import InferenceResponse
from triton_core.server import Server
from triton_core.tensor import Tensor

BACKEND = "testadd"
FAIL_VALUE = -999
SLOW_MS = 200
LABELS = ["cat", "dog", "bird", "fish"]


class _Instance(abi.Instance):
    def __init__(self, model: _Model) -> None:
        self.model = model

    def execute(self, requests, timer):
        cfg = self.model.config
        mode = cfg.parameter("mode", "add_sub")
        delay = float(cfg.parameter("sleep_ms", "0") or 0)
        timer.compute_start()
        if delay:
            time.sleep(delay / 1000)
        out = []
        for r in requests:
            if mode == "add_sub":
                a = r.inputs["INPUT0"].as_numpy()
                b = r.inputs["INPUT1"].as_numpy()
                if np.any(a == FAIL_VALUE):
                    out.append(InferenceResponse(error=TritonError.internal(
                        f"testadd: INPUT0 holds the failing value {FAIL_VALUE}")))
                    continue
                res = [Tensor.from_numpy("OUTPUT0", a + b), Tensor.from_numpy("OUTPUT1", a - b)]
            else:  # identity
                res = [Tensor.from_numpy(o.name, r.inputs[i.name].as_numpy(), o.datatype)
                       for i, o in zip(cfg.input, cfg.output, strict=True)]
            wanted = r.requested_output_names()
            if wanted is not None:
                res = [t for t in res if t.name in wanted]
            out.append(InferenceResponse(outputs=res))
        timer.compute_end()
        return out


class _Model(abi.Model):
    def __init__(self, ctx: abi.ModelContext) -> None:
        self.config = ctx.config

    def create_instance(self, ctx):
        return _Instance(self)


class _Backend(abi.Backend):
    def load_model(self, ctx):
        return _Model(ctx)


@abi.hookimpl
def triton_backends():
    yield abi.BackendSpec(name=BACKEND, factory=lambda ctx: _Backend(), description="front-end tests")


plugin = types.ModuleType("testing_backend_plugin")
plugin.triton_backends = triton_backends  # type: ignore[attr-defined]

SIMPLE = """
name: "simple"
backend: "testadd"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
"""

SIMPLE_STRING = """
name: "simple_string"
backend: "testadd"
max_batch_size: 8
parameters { key: "mode" value { string_value: "identity" } }
input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
"""

CLASSIFIER = """
name: "classifier"
backend: "testadd"
max_batch_size: 8
parameters { key: "mode" value { string_value: "identity" } }
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]
"""

SLOW = f"""
name: "slow"
backend: "testadd"
max_batch_size: 0
parameters {{ key: "sleep_ms" value {{ string_value: "{SLOW_MS}" }} }}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
input [
  {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
"""

MODELS = {"simple": SIMPLE, "simple_string": SIMPLE_STRING, "classifier": CLASSIFIER, "slow": SLOW}


def make_repository(tmp_path: Path, models: dict[str, str] | None = None) -> Path:
    """Write the test models (config.pbtxt and an empty version folder 1) under tmp_path/models."""
    repo = Path(tmp_path) / "models"
    for name, cfg in (models or MODELS).items():
        d = repo / name
        (d / "1").mkdir(parents=True, exist_ok=True)
        (d / "config.pbtxt").write_text(cfg)
    if (repo / "classifier").is_dir():
        (repo / "classifier" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return repo


def make_server(tmp_path: Path, **options: object) -> Server:
    """A started Server over make_repository(tmp_path) with the test backend registered.

    Defaults to explicit model control with every model loaded, so load / unload work.
    """
    repo = make_repository(tmp_path)
    opts: dict = {"model_repository": [repo], "model_control_mode": "explicit", "load_model": ["*"]}
    opts.update(options)
    server = testing.make_server(repo, plugin, **opts)
    server.start()
    return server
