"""Y = 3 * X; RUN = how many requests this model has executed (a cache hit repeats it)."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.runs = 0

    def execute(self, requests: list) -> list:
        out = []
        for r in requests:
            self.runs += 1
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", (3 * x).astype(np.float32)),
                pb_utils.Tensor("RUN", np.array([self.runs], dtype=np.int32))]))
        return out
