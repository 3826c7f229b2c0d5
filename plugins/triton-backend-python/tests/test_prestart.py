"""The worker started before the server's imports (triton_backend_python.prestart): which
repositories get one, its adoption by the first model load (in its model's folder), and
its end when no model takes it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from python_backend_helpers import build_repo, make_server, ready

from triton_backend_python import prestart
from triton_core import InferenceRequest, Tensor
from triton_core.prestart import PrestartPlan
from triton_core.testing import free_port, wait_until


@pytest.fixture(autouse=True)
def _no_spare_left():
    yield
    prestart.discard()


def _plan(repo: Path, models: tuple[str, ...] | None = None) -> PrestartPlan:
    return PrestartPlan((str(repo),), models)


def _spare_pid() -> int:
    assert prestart._spare is not None
    return prestart._spare.process.pid


def _wait_exited(proc: psutil.Process) -> None:
    wait_until(lambda: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE,
               f"process {proc.pid} to exit")


def _worker(s):
    """The model's one worker (the python backend's instance of worker_modules)."""
    return next(iter(s.manager.get("worker_modules").model.backend.workers))


def _modules(s, model: str = "worker_modules") -> list[str]:
    resp = s.infer(InferenceRequest(model, inputs={"IN": Tensor.from_numpy("IN", np.zeros(1, np.float32))}))
    return [n.decode() for n in resp.output("MODULES").as_numpy()]


@pytest.mark.parametrize(("config", "model_py", "expected"), [
    ('backend: "python"\nmax_batch_size: 0', True, True),
    ('name: "m" backend:"python"', True, True),
    ('backend: "python"\nparameters { key: "EXECUTION_ENV_PATH" value: {string_value: "/e"} }',
     True, False),
    ('backend: "onnxruntime"', False, False),
    (None, True, True),  # no config: the python backend's model.py
    (None, False, False),
])
def test_which_models_run_on_the_server_interpreter(tmp_path, config, model_py, expected):
    (tmp_path / "1").mkdir()
    if config is not None:
        (tmp_path / "config.pbtxt").write_text(config)
    if model_py:
        (tmp_path / "1" / "model.py").write_text("class TritonPythonModel: pass\n")
    assert prestart.runs_on_the_server_interpreter(str(tmp_path)) is expected


def test_the_first_model_load_adopts_the_spare_in_its_model_folder(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    prestart.prestart(_plan(repo))
    pid = _spare_pid()
    with make_server(repo) as s:
        assert prestart._spare is None  # adopted
        worker = _worker(s)
        assert worker.pid == pid
        assert Path(psutil.Process(pid).cwd()) == repo / "worker_modules" / "1"
        names = _modules(s)
    assert "triton_core" not in names and "triton_python_backend_utils._stub" in names


def test_no_spare_without_a_python_model_to_take_it(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    prestart.prestart(_plan(repo, ("absent",)))  # --load-model names another model
    assert prestart._spare is None
    (tmp_path / "worker_modules" / "config.pbtxt").write_text('backend: "onnxruntime"')
    prestart.prestart(_plan(repo))
    assert prestart._spare is None


def test_a_spare_for_another_environment_is_stopped_not_adopted(tmp_path, monkeypatch):
    repo = build_repo(tmp_path, ["worker_modules"])
    prestart.prestart(_plan(repo))
    spare = psutil.Process(_spare_pid())
    monkeypatch.setenv("TRITON_PRESTART_TEST", "changed")  # after the spare started
    with make_server(repo) as s:
        worker = _worker(s)
        assert worker.pid != spare.pid
        assert "triton_python_backend_utils._stub" in _modules(s)
    assert prestart._spare is None
    _wait_exited(spare)


def test_a_spare_no_model_takes_is_stopped(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    prestart.prestart(_plan(repo))
    spare = psutil.Process(_spare_pid())
    prestart.discard()  # what the timer does after SPARE_TTL_S
    assert prestart._spare is None
    _wait_exited(spare)


def test_the_server_stops_a_spare_no_model_took_once_started(tmp_path):
    repo = build_repo(tmp_path / "a", ["worker_modules"])
    prestart.prestart(_plan(repo))
    spare = psutil.Process(_spare_pid())
    empty = tmp_path / "empty"
    empty.mkdir()
    with make_server(empty):  # its start calls triton_server_started
        assert prestart._spare is None
    _wait_exited(spare)


def test_one_spare_at_most_and_only_for_its_own_process(tmp_path):
    repo = build_repo(tmp_path, ["worker_modules"])
    prestart.prestart(_plan(repo))
    first = psutil.Process(_spare_pid())
    prestart.prestart(_plan(repo))
    assert _spare_pid() != first.pid
    _wait_exited(first)
    spare = prestart._spare
    spare.owner = -1  # as a forked child sees its parent's spare
    env = prestart.default_env()
    assert prestart.take(sys.executable, env) is None
    prestart.discard()
    assert prestart._spare is spare  # not this process's to stop
    spare.owner = os.getpid()
    assert prestart.take(sys.executable, env) is spare
    prestart._close(spare)


def test_a_relative_pythonpath_gets_no_spare(tmp_path, monkeypatch):
    # a relative entry resolves against the folder a worker starts in: "/" for a spare
    repo = build_repo(tmp_path, ["worker_modules"])
    monkeypatch.setenv("PYTHONPATH", "lib")
    prestart.prestart(_plan(repo))
    assert prestart._spare is None


def test_tritonserver_starts_the_worker_before_its_imports(tmp_path):
    """The console script's path: launcher, entry point, adoption (the log says which pid)."""
    repo = build_repo(tmp_path, ["worker_modules"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "triton_core", "--model-repository", str(repo), "--log-verbose",
         "1", "--http-address", "127.0.0.1", "--http-port", str(port), "--allow-grpc", "false",
         "--allow-metrics", "false"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: ready(url) or proc.poll() is not None, "the server to be ready", 120)
        assert proc.poll() is None, proc.communicate()[0]
        body = json.dumps({"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1],
                                       "data": [0.0]}]}).encode()
        req = urllib.request.Request(url + "/v2/models/worker_modules/infer", data=body)
        with urllib.request.urlopen(req, timeout=30) as r:
            names = json.loads(r.read())["outputs"][0]["data"]
        assert "triton_python_backend_utils._stub" in names and "triton_core" not in names
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    adopted = re.search(r"model 'worker_modules' \(instance '\w+', pid (\d+)\) adopts the worker "
                        r"started before the server's imports", out)
    assert adopted, out
