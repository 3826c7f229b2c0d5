"""The worker process's plumbing (parameter worker_process: true): start, round trips, errors,
a worker that dies mid-call and its replacement. Core ML's own predictions in a worker run
in test_coreml_predict.py (macOS); here the worker runs coreml_backend_helpers.EchoPredictor."""

from __future__ import annotations

import numpy as np
import pytest
from coreml_backend_helpers import echo_loader
from PIL import Image

from triton_backend_coreml.worker import PredictWorker
from triton_core.errors import ErrorCode, TritonError


@pytest.fixture
def worker():
    w = PredictWorker("model 'm', instance 'm_0'", echo_loader, ())
    yield w
    w.close()


def test_round_trips_arrays_lists_and_images(worker):
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    out = worker.predict({"x": x}, None)
    np.testing.assert_array_equal(out["x"], x)
    assert out["x"].dtype == np.float16
    img = Image.fromarray(np.full((4, 5, 3), 7, np.uint8))
    (a, b) = worker.predict([{"image": img}, {"n": 2}], None)
    assert np.asarray(a["image"]).tolist() == np.asarray(img).tolist() and b == {"n": 2}


def test_a_failed_prediction_is_internal_and_the_worker_lives_on(worker):
    with pytest.raises(TritonError) as e:
        worker.predict({"raise": "bad input"}, None)
    assert e.value.code is ErrorCode.INTERNAL
    assert e.value.message == ("Core ML failed to run model 'm', instance 'm_0': RuntimeError: bad input")
    pid = worker.proc.pid
    assert worker.predict({"n": 1}, None) == {"n": 1} and worker.proc.pid == pid


def test_a_dying_worker_fails_its_call_and_is_replaced(worker):
    pid = worker.proc.pid
    with pytest.raises(TritonError) as e:
        worker.predict({"exit": 3}, None)
    assert e.value.code is ErrorCode.UNAVAILABLE
    assert "the Core ML worker died during the prediction (exit code 3)" in e.value.message
    assert worker.predict({"n": 1}, None) == {"n": 1}
    assert worker.proc.pid != pid


def test_a_load_failure_in_the_worker_is_a_load_error():
    with pytest.raises(TritonError) as e:
        PredictWorker("model 'm', instance 'm_0'", echo_loader, ("no such model",))
    assert e.value.code is ErrorCode.INVALID_ARG
    assert e.value.message == ("model 'm', instance 'm_0': Core ML cannot load the model: "
                               "RuntimeError: no such model")


def test_close_stops_the_worker():
    w = PredictWorker("model 'm', instance 'm_0'", echo_loader, ())
    proc = w.proc
    w.close()
    assert not proc.is_alive() and proc.exitcode == 0
    w.close()  # twice is fine
