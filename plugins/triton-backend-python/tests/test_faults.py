"""Faults: exceptions, error responses, dying and hanging workers, unload in flight, bad models."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from python_backend_helpers import build_repo, make_server
from tritonclient.utils import InferenceServerException

from triton_core import ErrorCode, TritonError
from triton_core.testing import serving_http, wait_until


def _x(client, model, x, **kw):
    i = httpclient.InferInput("X", [1], "FP32")
    i.set_data_from_numpy(np.array([x], dtype=np.float32))
    return client.infer(model, [i], **kw)


def _our_segments(prefix: str) -> list[str]:
    return glob.glob("/dev/shm/" + prefix.lstrip("/") + "*")


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    repo = build_repo(tmp_path_factory.mktemp("repo"), ["faults", "add_sub"])
    server = make_server(repo)
    server.start()
    try:
        with serving_http(server) as url:
            yield server, httpclient.InferenceServerClient(url), repo
    finally:
        server.stop()


def test_exception_in_execute_fails_only_that_call(faults):
    server, client, _ = faults
    pid = server.manager.get("faults").instances[0].worker.pid
    with pytest.raises(InferenceServerException) as e:
        _x(client, "faults", 1.0)
    assert "ValueError: boom in execute" in e.value.message()
    assert e.value.status() == "500"
    assert _x(client, "faults", 7.0).as_numpy("Y").tolist() == [7.0]
    assert server.manager.get("faults").instances[0].worker.pid == pid  # no restart


def test_response_with_error(faults):
    _, client, _ = faults
    with pytest.raises(InferenceServerException) as e:
        _x(client, "faults", 2.0)
    assert "bad value 2" in e.value.message() and e.value.status() == "400"


def test_worker_dies_mid_request_then_restarts(faults):
    server, client, repo = faults
    inst = server.manager.get("faults").instances[0]
    old = inst.worker.pid
    with pytest.raises(InferenceServerException) as e:
        _x(client, "faults", 3.0)
    msg = e.value.message()
    assert e.value.status() == "503" and "exited unexpectedly" in msg and "exit code 3" in msg
    # the restarted worker takes 1.5 s in initialize: readiness says so meanwhile
    assert not client.is_model_ready("faults") and not client.is_server_ready()
    assert client.is_model_ready("add_sub")  # other models keep serving
    a = np.ones((1, 16), np.float32)
    i0 = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    i1 = httpclient.InferInput("INPUT1", [1, 16], "FP32")
    i0.set_data_from_numpy(a)
    i1.set_data_from_numpy(a)
    assert client.infer("add_sub", [i0, i1]).as_numpy("OUTPUT0").tolist() == (a * 2).tolist()
    # a request meanwhile waits for the new worker
    assert _x(client, "faults", 5.0).as_numpy("Y").tolist() == [5.0]
    assert client.is_model_ready("faults") and inst.worker.pid != old and inst.restarts >= 1
    with pytest.raises(ProcessLookupError):
        os.kill(old, 0)  # reaped


def test_worker_killed_while_idle(faults):
    server, client, _ = faults
    inst = server.manager.get("faults").instances[0]
    old = inst.worker.pid
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not client.is_model_ready("faults"), "the model not ready", 5)
    wait_until(lambda: client.is_model_ready("faults"), "the model ready again", 10)
    assert inst.worker.pid != old
    assert _x(client, "faults", 6.0).as_numpy("Y").tolist() == [6.0]


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_request_right_after_idle_kill_succeeds(faults):
    """A worker killed between requests: the next request is retried on the new worker."""
    server, client, _ = faults
    inst = server.manager.get("faults").instances[0]
    wait_until(lambda: client.is_model_ready("faults"), "the model ready again", 10)
    old, restarts = inst.worker.pid, inst.restarts
    os.kill(old, signal.SIGKILL)  # no wait for readiness: the reader may not have noticed yet
    assert _x(client, "faults", 9.0).as_numpy("Y").tolist() == [9.0]
    assert inst.worker.pid != old and inst.restarts == restarts + 1


def test_idle_death_before_the_reader_notices(faults, monkeypatch):
    """The async reader notices the death late: execute finds it and retries, once."""
    server, client, _ = faults
    inst = server.manager.get("faults").instances[0]
    wait_until(lambda: client.is_model_ready("faults"), "the model ready again", 10)
    old, restarts = inst.worker.pid, inst.restarts
    late = threading.Event()
    on_death = inst.on_death

    def slow_reader(w, killed_for=""):
        if threading.current_thread().name.startswith("pb-async"):
            late.wait(10)  # the reader "has not noticed yet"
        on_death(w, killed_for)

    monkeypatch.setattr(inst, "on_death", slow_reader)
    try:
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: _zombie(old), "the worker dead", 5)  # channels closed, not noticed yet
        assert inst.state == "ready" and inst.worker.pid == old
        assert _x(client, "faults", 10.0).as_numpy("Y").tolist() == [10.0]
    finally:
        late.set()
    assert inst.worker.pid != old and inst.restarts == restarts + 1
    # a request the worker had accepted still fails (it may have had side effects)
    with pytest.raises(InferenceServerException) as e:
        _x(client, "faults", 3.0)
    assert e.value.status() == "503" and "exited unexpectedly" in e.value.message()
    assert _x(client, "faults", 11.0).as_numpy("Y").tolist() == [11.0]


def test_hang_past_execute_timeout(faults):
    server, client, _ = faults
    inst = server.manager.get("faults").instances[0]
    old = inst.worker.pid
    t0 = time.monotonic()
    with pytest.raises(InferenceServerException) as e:
        _x(client, "faults", 4.0)
    assert time.monotonic() - t0 < 5
    assert "did not finish within 1 s" in e.value.message() and e.value.status() == "503"
    # The instance left "ready" before the error was answered (not later, when the async
    # reader notices the EOF), so the next request waits for the new worker instead of
    # being sent to the killed one. The restarted worker sleeps 1.5 s in initialize.
    assert inst.state == "restarting" and inst.worker.pid == old
    assert _x(client, "faults", 8.0).as_numpy("Y").tolist() == [8.0]


def test_startup_timeout(tmp_path):
    repo = build_repo(tmp_path, ["slow"])
    (repo / "slow" / "1" / "model.py").write_text(
        "import time\nclass TritonPythonModel:\n"
        "    def initialize(self, args):\n        time.sleep(30)\n"
        "    def execute(self, requests):\n        return []\n")
    server = make_server(repo, exit_on_error=False,
                         backend_config={"python": {"stub-timeout-seconds": "1"}})
    t0 = time.monotonic()
    server.start()
    try:
        assert time.monotonic() - t0 < 10
        assert "did not finish within 1 s" in server.load_errors["slow"]
        assert not server.model_ready("slow")
    finally:
        server.stop()


def test_unload_while_requests_in_flight(tmp_path):
    repo = build_repo(tmp_path, ["slow", "add_sub"])
    server = make_server(repo, model_control_mode="explicit", load_model=["*"])
    server.start()
    try:
        inst = server.manager.get("slow").instances[0]
        pid, prefix = inst.worker.pid, inst.worker.prefix
        assert _our_segments(prefix) == []  # unlinked once both sides mapped them
        with serving_http(server) as url:
            client = httpclient.InferenceServerClient(url)
            results = []

            def call(v):
                try:  # one client per thread: tritonclient.http clients are not thread-safe
                    c = httpclient.InferenceServerClient(url)
                    results.append(_x(c, "slow", v).as_numpy("Y").tolist())
                except InferenceServerException as e:
                    results.append(e.message())

            threads = [threading.Thread(target=call, args=(float(v),)) for v in range(3)]
            for t in threads:
                t.start()
            version = server.manager.get("slow")
            wait_until(lambda: int(version.inflight) == 3, "three requests in flight")
            server.unload_model("slow")
            for t in threads:
                t.join()
            assert sorted(results) == [[0.0], [1.0], [2.0]]  # in-flight requests finished
            with pytest.raises(InferenceServerException):
                _x(client, "slow", 1.0)
            assert not client.is_model_ready("slow")
        assert (repo / "slow" / "finalized").read_text() == "yes"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert _our_segments(prefix) == []
    finally:
        server.stop()


def test_model_that_fails_to_import(tmp_path):
    repo = build_repo(tmp_path, ["add_sub"])
    shutil.copytree(Path(__file__).parent / "broken" / "broken", repo / "broken")
    server = make_server(repo, exit_on_error=False)
    server.start()
    try:
        err = server.load_errors["broken"]
        assert "No module named 'no_such_module_for_the_test'" in err and "broken" in err
        assert server.model_ready("add_sub") and not server.model_ready("broken")
        a = np.ones((1, 16), np.float32)
        assert server.model("add_sub").infer({"INPUT0": a, "INPUT1": a})["OUTPUT0"].tolist() == \
            (a * 2).tolist()
    finally:
        server.stop()


def test_exit_on_error_reports_the_python_error(tmp_path):
    repo = tmp_path
    shutil.copytree(Path(__file__).parent / "broken" / "broken", repo / "broken")
    server = make_server(repo)
    with pytest.raises(TritonError) as e:
        server.start()
    assert e.value.code is ErrorCode.INVALID_ARG and "ModuleNotFoundError" in e.value.message


def _same_minor(python: Path) -> bool:
    r = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == str(sys.version_info[:2])


def _env_with(tmp: Path, numpy_too: bool) -> Path | None:
    if sys.platform != "linux":
        return None
    # The environment borrows this interpreter's numpy, whose C extensions load only
    # in the same Python X.Y: take the system Python when it is that version, else
    # the installation this interpreter (or its venv) comes from.
    base = next((p for p in (Path("/usr/bin/python3"), Path(sys._base_executable))
                 if p.exists() and _same_minor(p)), None)
    if base is None:
        return None
    env = tmp / ("env_np" if numpy_too else "env_bare")
    r = subprocess.run([str(base), "-m", "venv", "--without-pip", str(env)], capture_output=True)
    if r.returncode != 0:
        return None
    if numpy_too:
        import numpy

        only = tmp / "numpy_only"
        only.mkdir(exist_ok=True)
        src = Path(numpy.__file__).parent
        for p in (src, src.parent / "numpy.libs"):
            if p.exists() and not (only / p.name).exists():
                (only / p.name).symlink_to(p)
        site = next(env.glob("lib/python3*/site-packages"))
        (site / "numpy_only.pth").write_text(str(only) + "\n")
    return env


ENV_MODEL = '''
import json, sys
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        try:
            import triton_core  # noqa: F401
            has_core = True
        except ImportError:
            has_core = False
        info = json.dumps({"exe": sys.prefix, "core": has_core, "cffi": "_cffi_backend" in sys.modules})
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.array([info.encode()], dtype=object))])
                for r in requests]
'''


def test_execution_env_path(tmp_path):
    repo = tmp_path / "repo"
    for name, with_np in (("in_env", True), ("bad_env", False)):
        d = repo / name
        (d / "1").mkdir(parents=True)
        env = _env_with(d, with_np)
        if env is None:
            pytest.skip("no second Python installation to build an environment from")
        (d / "1" / "model.py").write_text(ENV_MODEL)
        (d / "config.pbtxt").write_text(
            'backend: "python"\ninput [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\n'
            'output [{ name: "Y" data_type: TYPE_STRING dims: [1] }]\n'
            f'parameters {{ key: "EXECUTION_ENV_PATH" value {{ string_value: '
            f'"$$TRITON_MODEL_DIRECTORY/{env.name}" }} }}\n')
    server = make_server(repo, exit_on_error=False)
    server.start()
    try:
        import json

        out = server.model("in_env").infer({"X": np.array([1.0], np.float32)})["Y"]
        info = json.loads(out[0])
        assert info["exe"] == str(repo / "in_env" / "env_np")
        assert info["core"] is False and info["cffi"] is False
        err = server.load_errors["bad_env"]
        assert "numpy" in err and "could not start" in err and "bad_env/env_bare" in err
    finally:
        server.stop()
