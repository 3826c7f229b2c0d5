"""Y = 2 * X; an INVALID_ARG error response when X holds a negative value."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if (x < 0).any():
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"double: negative value {int(x.min())}", pb_utils.TritonError.INVALID_ARG)))
                continue
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (2 * x).astype(np.int32))]))
        return out
