"""Y = X. X < 0 writes `started` and blocks until the file `release` exists (at most 30 s).

Every executed X is appended to `executed` (one a line) in the model's folder.
"""

import time
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.dir = Path(args["model_repository"])

    def execute(self, requests: list) -> list:
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            with (self.dir / "executed").open("a") as f:
                f.write(f"{float(x.reshape(-1)[0])}\n")
            if (x < 0).any():
                (self.dir / "started").write_text("yes")
                deadline = time.monotonic() + 30
                while not (self.dir / "release").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x.copy())]))
        return out
