"""Custom metrics: a counter, a gauge and a histogram per request."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.requests = pb_utils.MetricFamily(
            "custom_requests", "requests seen", pb_utils.MetricFamily.COUNTER
        ).Metric(labels={"model": args["model_name"]})
        self.last = pb_utils.MetricFamily(
            "custom_last_value", "last X", pb_utils.MetricFamily.GAUGE).Metric(labels={"k": "v"})
        self.hist = pb_utils.MetricFamily(
            "custom_x", "X values", pb_utils.MetricFamily.HISTOGRAM).Metric(buckets=[1.0, 10.0])

    def execute(self, requests):
        out = []
        for r in requests:
            x = float(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            self.requests.increment(1)
            self.last.set(x)
            self.hist.observe(x)
            total = self.requests.value()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", np.array([total], dtype=np.float32))]))
        return out
