"""MODULES: the names of every module its worker process has imported (a synchronous model)."""

import sys

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        names = np.array([name.encode() for name in sorted(sys.modules)], dtype=np.object_)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("MODULES", names)])
                for _ in requests]
