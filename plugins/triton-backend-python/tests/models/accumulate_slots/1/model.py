"""Direct sequence batching with slots: ROWS tells how many rows (padding included) a batch had."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            acc = pb_utils.get_input_tensor_by_name(r, "ACC_IN").as_numpy()
            ready = pb_utils.get_input_tensor_by_name(r, "READY").as_numpy()
            if not ready.all() and (x.any() or r.correlation_id() != 0):
                raise pb_utils.TritonModelException("a row that is not ready carries data")
            total = (acc + x).astype(np.int32)
            rows = np.full_like(x, len(requests))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", total),
                                                   pb_utils.Tensor("ROWS", rows),
                                                   pb_utils.Tensor("ACC_OUT", total)]))
        return out
