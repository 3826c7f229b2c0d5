"""X=1: raise; X=2: error response; X=3: os._exit; X=4: hang; X=5: 50 ms; else echo.

A restarted worker (not the first start) waits 1.5 s in initialize, so tests
can watch the model report not ready while its worker is down.
"""

import os
import time
from pathlib import Path

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        marker = Path(args["model_repository"]) / "starts"
        n = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(n + 1))
        if n >= 1:  # a restart (the first start reuses the auto-complete worker)
            time.sleep(1.5)

    def execute(self, requests):
        out = []
        for r in requests:
            x = float(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            if x == 1:
                raise ValueError("boom in execute")
            if x == 2:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "bad value 2", pb_utils.TritonError.INVALID_ARG)))
                continue
            if x == 3:
                os._exit(3)
            if x == 4:
                time.sleep(30)
            if x == 5:
                time.sleep(0.05)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", np.array([x], dtype=np.float32))]))
        return out
