"""Sum of X per sequence (keyed by correlation id), reset at START, dropped at END.

Rows of empty batch slots come with READY = 0: they answer 0 and touch no sum.
"""

import numpy as np

import triton_python_backend_utils as pb_utils


def _flag(request, name: str) -> bool:
    return bool(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.sums: dict = {}

    def execute(self, requests: list) -> list:
        out = []
        for r in requests:
            total = 0
            if _flag(r, "READY"):
                key = r.correlation_id()
                if _flag(r, "START"):
                    self.sums[key] = 0
                x = int(pb_utils.get_input_tensor_by_name(r, "X").as_numpy().reshape(-1)[0])
                total = self.sums[key] = self.sums[key] + x
                if _flag(r, "END"):
                    del self.sums[key]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "SUM", np.array([[total]], dtype=np.int32))]))
        return out
