"""CoreMLInstance: one loaded Core ML model (macOS) and execute() over a batch of requests.

Predictions run in the server's process, on the instance's thread (the core never calls
one instance concurrently). coremltools' bridge holds the GIL during a prediction, so
this is never an inline (event-loop) instance; why not a worker process yet: see
docs/coreml.md, "Process model".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.errors import TritonError
from triton_core.request import InferenceRequest, InferenceResponse

from .compute_units import coreml_units
from .feeds import Call

log = logging.getLogger("triton_backend_coreml")


class CoreMLInstance(Instance):
    def __init__(self, model, ctx: InstanceContext) -> None:
        import coremltools as ct

        self.model = model
        self.ctx = ctx
        self.compute_units = model.settings.units_for(ctx.kind)
        compiled = model.cache.compiled(model.name, model.version, model.model_file)
        kwargs: dict[str, Any] = {}
        if model.function_name:
            kwargs["function_name"] = model.function_name
        try:
            hints = model.settings.coreml_hints()
            if hints:
                kwargs["optimization_hints"] = hints
            self.mlmodel = ct.models.CompiledMLModel(
                str(compiled), compute_units=coreml_units(self.compute_units), **kwargs)
        except ValueError as e:  # e.g. optimization hints before macOS 15
            raise TritonError.unsupported(
                f"unable to load model '{model.name}', instance '{ctx.name}': {e}") from None
        except Exception as e:  # noqa: BLE001 - Core ML's load errors reach the user
            raise TritonError.invalid_arg(
                f"unable to load model '{model.name}', instance '{ctx.name}': Core ML cannot load "
                f"'{compiled}': {type(e).__name__}: {e}") from None
        log.info("model '%s' instance '%s' (%s): Core ML compute units %s", model.name, ctx.name,
                 ctx.kind, self.compute_units)
        self.feeds = model.feed_builder()

    def execute(self, requests: Sequence[InferenceRequest], timer: ExecuteTimer
                ) -> list[InferenceResponse]:
        if not requests:
            return []
        plan = self.feeds.plan(requests)
        results: list[Any] = []
        timer.compute_start()
        try:
            for call in plan.calls:
                results.append(self._predict(call))
        finally:
            timer.compute_end()
        return plan.responses(results)

    def _predict(self, call: Call) -> Any:
        try:
            if call.states is None:
                return self.mlmodel.predict(call.payload)
            (values,) = call.states
            state = self.mlmodel.make_state()
            for name, value in values.items():
                state.write_state(name, value)
            out = self.mlmodel.predict(call.payload, state=state)
            return out, {name: state.read_state(name) for name in values}
        except TritonError as e:
            return e
        except Exception as e:  # noqa: BLE001 - a failed prediction fails its requests only
            return TritonError.internal(
                f"Core ML failed to run model '{self.model.name}': {type(e).__name__}: {e}")

    def close(self) -> None:
        self.mlmodel = None
