"""Implicit state: ACC_IN comes from the core, ACC_OUT goes back to it (never to the client)."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            acc = pb_utils.get_input_tensor_by_name(r, "ACC_IN").as_numpy()
            total = (acc + x).astype(np.int32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", total),
                                                   pb_utils.Tensor("ACC_OUT", total)]))
        return out
