"""A model whose is_ready() answers what a file says and blocks while the file says 'hang'
(tests of readiness probes: they must never wait for it). A file 'hanging' beside the flag
tells a test that is_ready() has blocked."""

import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.flag = os.path.join(os.path.dirname(__file__), "ready_flag")
        self.hanging = os.path.join(os.path.dirname(__file__), "hanging")

    def is_ready(self):
        while True:
            try:
                with open(self.flag) as f:
                    state = f.read().strip()
            except OSError:
                return True
            if state != "hang":
                return state == "ready"
            if not os.path.exists(self.hanging):
                open(self.hanging, "w").close()
            time.sleep(0.01)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
