"""BYTES: upper-cases each element and returns the lengths."""

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.out_dtype = pb_utils.triton_string_to_numpy("TYPE_STRING")

    def execute(self, requests):
        responses = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            up = np.array([x.upper() for x in a.reshape(-1)], dtype=self.out_dtype).reshape(a.shape)
            lens = np.array([len(x) for x in a.reshape(-1)], dtype=np.int64).reshape(a.shape)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", up), pb_utils.Tensor("LENGTHS", lens)]))
        return responses
