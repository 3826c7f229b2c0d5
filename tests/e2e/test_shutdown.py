"""Shutdown of the real process under --exit-timeout-secs: one deadline for every wait,
then python backend workers are killed and the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import tritonclient.http as httpclient

from e2e_server import start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "core" / "tests"))
from waiting import wait_until  # noqa: E402

HUNG = '''
import os
import time
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = Path(args["model_repository"])
        with open(self.dir / "workers", "a") as f:
            f.write(f"{os.getpid()}\\n")

    def execute(self, requests):
        (self.dir / "executing").write_text("1")
        time.sleep(3600)  # hung
'''


def _model(repo: Path, name: str, count: int = 1) -> Path:
    d = repo / name
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(HUNG)
    (d / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n'
        f'instance_group [{{ count: {count} kind: KIND_CPU }}]\n')
    return d


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (killed, not yet reaped by whoever adopted it) is gone too
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


def _pids(d: Path) -> list[int]:
    f = d / "workers"
    return [int(x) for x in f.read_text().split()] if f.exists() else []


def _wait_exit(proc: subprocess.Popen, log: Path) -> int:
    try:
        # generous: the bug took 45 s with an exit timeout of 5 (or never exited)
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the server did not exit:\n" + log.read_text()[-3000:]) from None


def test_sigterm_with_a_hung_python_model_exits_by_the_exit_timeout(tmp_path):
    repo = tmp_path / "repo"
    d = _model(repo, "hung")
    r = start_server(tmp_path, "--model-repository", str(repo), "--exit-timeout-secs", "1")
    got: dict = {}

    def infer() -> None:
        c = httpclient.InferenceServerClient(r.http_url, network_timeout=60)
        i = httpclient.InferInput("X", [1], "FP32")
        i.set_data_from_numpy(__import__("numpy").zeros(1, "float32"))
        try:
            c.infer("hung", [i])
            got["ok"] = True
        except Exception as e:  # noqa: BLE001 - any answer or a closed connection
            got["error"] = e

    t = threading.Thread(target=infer, daemon=True)
    t.start()
    wait_until(lambda: (d / "executing").exists(), "the request reached the model")
    pids = _pids(d)
    assert pids
    r.proc.send_signal(signal.SIGTERM)
    assert _wait_exit(r.proc, r.log) == 0, r.log.read_text()[-3000:]  # not the watchdog's exit
    assert "Traceback" not in r.log.read_text()
    t.join(10)
    assert "ok" not in got
    wait_until(lambda: all(_gone(p) for p in pids), "the worker processes are gone", timeout=10)


def test_sigterm_during_a_long_load_stops_it(tmp_path):
    repo = tmp_path / "repo"
    d = _model(repo, "many", count=10000)
    r = start_server(tmp_path, "--model-repository", str(repo), "--model-control-mode",
                     "explicit", "--exit-timeout-secs", "1")

    def load() -> None:
        try:
            httpclient.InferenceServerClient(r.http_url, network_timeout=120).load_model("many")
        except Exception:  # noqa: BLE001 - the load is expected to fail (stopping)
            pass

    threading.Thread(target=load, daemon=True).start()
    wait_until(lambda: len(_pids(d)) >= 2, "the load started instances")
    r.proc.send_signal(signal.SIGTERM)
    assert _wait_exit(r.proc, r.log) == 0, r.log.read_text()[-3000:]
    wait_until(lambda: all(_gone(p) for p in _pids(d)), "the worker processes are gone",
               timeout=10)
