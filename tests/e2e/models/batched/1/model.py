"""Y = X + 1; N = how many requests this execute got."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        n = np.array([[len(requests)]], dtype=np.int32)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            rows = np.repeat(n, x.shape[0], axis=0)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x + 1).astype(np.int32)),
                                                   pb_utils.Tensor("N", rows)]))
        return out
