"""Decoupled repeat: one response per element of IN (from a thread), then FINAL."""

import threading
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            t = threading.Thread(target=self.run, args=(request,), daemon=True)
            t.start()
            self.threads.append(t)
        return None

    def run(self, request):
        sender = request.get_response_sender()
        values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().copy()
        d = pb_utils.get_input_tensor_by_name(request, "DELAY")
        delay = float(d.as_numpy()[0]) / 1000 if d is not None else 0.0
        for i, v in enumerate(values):
            if delay:
                time.sleep(delay)
            if request.is_cancelled():
                sender.send(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUT", np.array([v], dtype=np.int32)),
                pb_utils.Tensor("IDX", np.array([i], dtype=np.uint32))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for t in self.threads:
            t.join(timeout=5)
