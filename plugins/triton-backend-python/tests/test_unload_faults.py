"""Unloading a hung model, outputs a config does not declare, a worker dying early."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import numpy as np
import pytest
from python_backend_helpers import make_server

from triton_core import TritonError
from waiting import wait_until

CONFIG = """backend: "python"
max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]
"""

MODEL = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if x[0] == 4:
                time.sleep(3600)  # hung
            ts = [pb_utils.Tensor("Y", x.copy())]
            if x[0] == 9:
                ts.append(pb_utils.Tensor("EXTRA", x.copy()))  # not in the config
            out.append(pb_utils.InferenceResponse(ts))
        return out
'''


def _repo(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(MODEL)
    (d / "config.pbtxt").write_text(CONFIG)
    return tmp_path


def _x(server, v: float):
    return server.model("m").infer({"X": np.array([v], np.float32)})


def test_output_not_in_the_config_is_an_error_for_that_request(tmp_path):
    with make_server(_repo(tmp_path)) as s:
        with pytest.raises(TritonError) as e:
            _x(s, 9)
        assert e.value.message == "unexpected inference output 'EXTRA' for model 'm'"
        assert _x(s, 1)["Y"].tolist() == [1.0]  # the model keeps serving


def test_unload_of_a_hung_model_is_not_ready_at_once_and_bounded(tmp_path):
    s = make_server(_repo(tmp_path), model_control_mode="explicit", load_model=["m"],
                    exit_timeout_secs=0.5)
    with s, concurrent.futures.ThreadPoolExecutor(2) as pool:
        inst = s.manager.get("m").instances[0]
        pid = inst.worker.pid
        hung = pool.submit(_x, s, 4)
        wait_until(lambda: inst.pending, "the request reached the worker")
        t0 = time.monotonic()
        unload = pool.submit(s.unload_model, "m")
        wait_until(lambda: not s.model_ready("m"), "not ready once the unload starts")
        unload.result(30)
        # generous: the bug took the exit timeout + 30 s (finalize behind the hung
        # execute) + 5 s
        assert time.monotonic() - t0 < 15
        with pytest.raises(TritonError):
            hung.result(30)
        assert inst.worker.proc.poll() is not None, f"worker {pid} still running"


def test_worker_death_before_the_instance_holds_it(tmp_path, monkeypatch):
    """The worker's reader may report its death while the instance is still starting it
    (PythonInstance.worker not assigned yet): ignored, not an AttributeError."""
    from triton_backend_python.backend import PythonInstance

    start = PythonInstance._start

    def early_death(self, w=None):
        got = start(self, w)
        self.on_death(got)  # what the async reader does when the worker dies here
        return got

    monkeypatch.setattr(PythonInstance, "_start", early_death)
    with make_server(_repo(tmp_path)) as s:
        assert _x(s, 1)["Y"].tolist() == [1.0]
