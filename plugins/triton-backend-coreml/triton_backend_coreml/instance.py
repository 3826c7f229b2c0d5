"""CoreMLInstance: one loaded Core ML model (macOS) and execute() over a batch of requests.

By default predictions run in the server's process, on the instance's thread (the core
never calls one instance concurrently). coremltools' bridge holds the GIL during a
prediction, so this is never an inline (event-loop) instance. With the model parameter
``worker_process: true`` each instance predicts in its own worker process (worker.py).
docs/coreml.md, "Process model", weighs the two.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from triton_core.abi import ExecuteTimer, Instance, InstanceContext
from triton_core.errors import TritonError
from triton_core.request import InferenceRequest, InferenceResponse

from .feeds import Call
from .predict import load_compiled, run_call
from .worker import PredictWorker

log = logging.getLogger("triton_backend_coreml")


class CoreMLInstance(Instance):
    def __init__(self, model, ctx: InstanceContext) -> None:
        self.model = model
        self.ctx = ctx
        settings = model.settings
        self.compute_units = settings.units_for(ctx.kind)
        compiled = model.cache.compiled(model.name, model.version, model.model_file)
        args = (str(compiled), self.compute_units, model.function_name, settings.hint_names())
        what = f"model '{model.name}', instance '{ctx.name}'"
        self.mlmodel: Any = None
        self.worker: PredictWorker | None = None
        if settings.worker_process:
            self.worker = PredictWorker(what, load_compiled, args)
        else:
            try:
                self.mlmodel = load_compiled(*args)
            except ValueError as e:  # e.g. optimization hints before macOS 15
                raise TritonError.unsupported(f"unable to load {what}: {e}") from None
            except Exception as e:  # noqa: BLE001 - Core ML's load errors reach the user
                raise TritonError.invalid_arg(
                    f"unable to load {what}: Core ML cannot load '{compiled}': {type(e).__name__}: {e}"
                ) from None
        log.info("%s (%s): Core ML compute units %s%s", what, ctx.kind, self.compute_units,
                 ", in a worker process" if self.worker else "")
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
        """The call's result, or the TritonError that fails its requests (only those)."""
        try:
            if self.worker is not None:
                return self.worker.predict(call.payload, call.states)
            return run_call(self.mlmodel, call.payload, call.states)
        except TritonError as e:
            return e
        except Exception as e:  # noqa: BLE001 - a failed prediction fails its requests only
            return TritonError.internal(
                f"Core ML failed to run model '{self.model.name}': {type(e).__name__}: {e}")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.mlmodel = None
