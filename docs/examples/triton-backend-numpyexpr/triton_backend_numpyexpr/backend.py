"""Backend -> Model -> Instance for numpyexpr.

A model's expressions come from its config (``parameters { key: "<output>" value {
string_value: "<expression>" } }``) and from its version's ``model.expr`` file
(``<output> = <expression>`` lines, ``#`` comments), the file winning. Every
expression is compiled when the model loads, so a bad one fails the load with
a clear message instead of failing requests later.

Decoupled models (``model_transaction_policy { decoupled: true }``) also need a
``responses`` expression: the number of responses per request; each output
expression is evaluated once per response with ``i`` bound to its index.
"""

from __future__ import annotations

from pathlib import Path
from types import CodeType

import numpy as np

import triton_core
from triton_core.errors import TritonError
from triton_core.gather import batch_sizes, gather_input, scatter_output
from triton_core.request import RESPONSE_COMPLETE_FINAL, InferenceResponse

MODEL_FILENAME = "model.expr"
_GLOBALS = {"np": np, "__builtins__": {"len": len, "range": range, "min": min, "max": max}}


def _compile(text: str, where: str) -> CodeType:
    try:
        return compile(text, where, "eval")
    except SyntaxError as e:
        raise TritonError.invalid_arg(f"{where}: invalid expression {text!r}: {e.msg}") from None


def read_model_file(path: Path, model: str) -> dict[str, str]:
    """``name = expression`` lines of a model.expr file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': '{path}' is not a numpyexpr model file (not UTF-8 text)"
        ) from None
    out = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, expr = line.partition("=")
        if not eq or not name.strip().isidentifier() or "\x00" in line:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': '{path}' line {n}: expected '<output> = <expression>'")
        out[name.strip()] = expr.strip()
    return out


class ExprModel(triton_core.Model):
    def __init__(self, ctx: triton_core.ModelContext) -> None:
        cfg = ctx.config
        path = ctx.version_path / (cfg.default_model_filename or MODEL_FILENAME)
        if not path.is_file():
            raise TritonError.unavailable(f"unable to find '{path}' for model '{ctx.name}'")
        texts = {o.name: cfg.parameter(o.name) for o in cfg.output}
        if cfg.decoupled:
            texts["responses"] = cfg.parameter("responses")
        texts.update({k: v for k, v in read_model_file(path, ctx.name).items() if k in texts})
        missing = [k for k, v in texts.items() if not v]
        if missing:
            raise TritonError.invalid_arg(
                f"unable to load model '{ctx.name}': no expression for {', '.join(missing)} "
                "(add parameters { key: \"<output>\" value { string_value: \"<expression>\" } })")
        self.code = {k: _compile(v, f"model '{ctx.name}' {k}") for k, v in texts.items()}
        self.config = cfg  # nothing to auto-complete: the config is the model

    def create_instance(self, ctx: triton_core.InstanceContext) -> ExprInstance:
        return ExprInstance(self)


class ExprInstance(triton_core.Instance):
    def __init__(self, model: ExprModel) -> None:
        self.model = model
        self.config = model.config

    def _outputs(self, env: dict, wanted: list[str] | None) -> list[triton_core.Tensor]:
        outs = []
        for o in self.config.output:
            if wanted is not None and o.name not in wanted:
                continue
            value = np.asarray(eval(self.model.code[o.name], _GLOBALS, env))  # noqa: S307
            if o.datatype is triton_core.DataType.BYTES and value.dtype != object:
                value = value.astype(object)
            outs.append(triton_core.Tensor.from_numpy(o.name, value, o.datatype))
        return outs

    def execute(self, requests, timer):
        if self.config.decoupled:
            return self._execute_decoupled(requests, timer)
        names = [i.name for i in self.config.input]
        timer.compute_start()
        try:
            if len(requests) > 1 and self.config.max_batch_size > 0:
                # One evaluation for the whole batch (the core made the shapes match).
                sizes = batch_sizes(requests, names[0])
                env = {n: gather_input(requests, n) for n in names}
                outs = self._outputs(env, None)
                parts = {t.name: scatter_output(t.as_numpy(), sizes) for t in outs}
                responses = []
                for i, r in enumerate(requests):
                    wanted = r.requested_output_names()
                    responses.append(InferenceResponse(outputs=[
                        triton_core.Tensor.from_numpy(t.name, parts[t.name][i], t.datatype)
                        for t in outs if wanted is None or t.name in wanted]))
                return responses
            responses = []
            for r in requests:
                env = {n: t.as_numpy() for n, t in r.inputs.items()}
                try:
                    responses.append(InferenceResponse(outputs=self._outputs(
                        env, r.requested_output_names())))
                except Exception as e:  # noqa: BLE001 - the request's own failure
                    responses.append(InferenceResponse(error=TritonError.invalid_arg(
                        f"model '{self.config.name}': {type(e).__name__}: {e}")))
            return responses
        finally:
            timer.compute_end()

    def _execute_decoupled(self, requests, timer):
        timer.compute_start()
        for r in requests:
            sender = r.response_sender()
            env = {n: t.as_numpy() for n, t in r.inputs.items()}
            try:
                count = int(eval(self.model.code["responses"], _GLOBALS, env))  # noqa: S307
                for i in range(count):
                    env["i"] = i
                    sender.send(InferenceResponse(outputs=self._outputs(env, r.requested_output_names())))
                sender.send(None, RESPONSE_COMPLETE_FINAL)
            except Exception as e:  # noqa: BLE001
                if not sender.closed:
                    sender.send(InferenceResponse(error=TritonError.invalid_arg(
                        f"model '{self.config.name}': {type(e).__name__}: {e}")), RESPONSE_COMPLETE_FINAL)
        timer.compute_end()
        return None


class ExprBackend(triton_core.Backend):
    def __init__(self, ctx: triton_core.BackendContext) -> None:
        self.ctx = ctx

    def load_model(self, ctx: triton_core.ModelContext) -> ExprModel:
        return ExprModel(ctx)
