"""--frontend-processes N: N server processes on the same ports answer as one server
(statistics, metrics and settings over all of them), and what one process alone would
change is refused at start-up."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

from triton_core.cli import serve
from triton_core.testing import free_port, wait_until

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from testing_backend import SIMPLE  # noqa: E402

# the servers these tests start: N > 1 is refused off Linux (frontend_processes.refusals)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="--frontend-processes > 1 runs on Linux only: elsewhere SO_REUSEPORT does not "
           "spread a port's connections over its processes")

SEQUENCE = SIMPLE.replace('name: "simple"', 'name: "counter"') + "\nsequence_batching { }\n"


@pytest.mark.parametrize(("extra", "words"), [
    (["--model-control-mode", "explicit"], "--model-control-mode=explicit"),
    (["--cache-config", "local,size=1000"], "--cache-config"),
    (["--rate-limit", "execution_count"], "--rate-limit"),
    (["--metrics-config", "summary_latencies=true"], "summary_latencies=true"),
    (["--grpc-engine", "grpcio"], "--grpc-engine=grpcio"),
    (["--trace-config", "triton,file=/tmp/t.json"], "a trace file"),
    (["--trace-file", "/tmp/t.json"], "a trace file"),
    (["--http-port", "0"], "--http-port 0: each process would listen on a port of its own"),
    (["--grpc-port", "0"], "--grpc-port 0: each process would listen on a port of its own"),
])
def test_what_one_process_alone_would_change_is_refused(tmp_path, extra, words):
    with pytest.raises(SystemExit) as e:
        serve(["--model-repository", str(tmp_path), "--frontend-processes", "2", *extra])
    assert "--frontend-processes > 1 cannot be used with" in str(e.value.code)
    assert words in str(e.value.code)


def test_off_linux_several_processes_are_refused(tmp_path, monkeypatch):
    # elsewhere SO_REUSEPORT does not spread connections: one process would take them all
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SystemExit) as e:
        serve(["--model-repository", str(tmp_path), "--frontend-processes", "2"])
    assert "this platform (darwin): only Linux spreads the connections" in str(e.value.code)


def test_fewer_than_one_process_is_refused(tmp_path):
    with pytest.raises(SystemExit) as e:
        serve(["--model-repository", str(tmp_path), "--frontend-processes", "0"])
    assert "--frontend-processes must be at least 1, got 0" in str(e.value.code)


def _plugin_site(site: Path) -> None:
    # the tests' "testadd" backend as an installed plugin, found through its entry point
    info = site / "triton_backend_testadd-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: triton-backend-testadd\n"
                                   "Version: 0.0.0\n")
    (info / "entry_points.txt").write_text("[triton_core]\ntestadd = testing_backend\n")


def _start(tmp_path: Path, models: dict[str, str], n: int,
           *extra: str) -> tuple[subprocess.Popen, dict]:
    repo = tmp_path / "models"
    for name, config in models.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
    site = tmp_path / "site"
    _plugin_site(site)
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    args = [sys.executable, "-m", "triton_core.cli", "--model-repository", str(repo),
            "--frontend-processes", str(n), *extra]
    for name, port in ports.items():
        args += [f"--{name}-address", "127.0.0.1", f"--{name}-port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "TRITON_CORE_PLUGINS": "testadd", "TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD": "0"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, ports


def _get(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    # a new connection each time: the kernel picks the process that accepts it
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


@linux_only
def test_two_processes_answer_as_one_server(tmp_path):
    proc, ports = _start(tmp_path, {"simple": SIMPLE}, 2)
    http = f"http://127.0.0.1:{ports['http']}"
    try:
        # ready: both processes answer (each connection reaches one of them)
        wait_until(lambda: proc.poll() is not None or all(
            _get(http + "/v2/health/ready")[0] == 200 for _ in range(8)), "both processes ready")
        assert proc.poll() is None, _stop(proc)
        body = json.dumps({"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}).encode()
        for _ in range(30):
            status, out = _get(http + "/v2/models/simple/infer", body)
            assert status == 200, out
            assert json.loads(out)["outputs"][0]["data"] == [i + 1 for i in range(16)]
        # whichever process answers, it counts what every process did
        for _ in range(6):
            stats = json.loads(_get(http + "/v2/models/simple/stats")[1])["model_stats"][0]
            assert stats["inference_count"] == 30
            assert stats["inference_stats"]["success"]["count"] == 30
        metrics = _get(f"http://127.0.0.1:{ports['metrics']}/metrics")[1].decode()
        assert 'nv_inference_count{model="simple",version="1"} 30\n' in metrics
        assert 'nv_inference_request_success{model="simple",version="1"} 30\n' in metrics
        # a settings change through one process holds in all of them
        status, out = _get(http + "/v2/logging", json.dumps({"log_verbose_level": 2}).encode())
        assert status == 200, out
        status, out = _get(http + "/v2/trace/setting", json.dumps({"trace_rate": "7"}).encode())
        assert status == 200, out
        status, out = _get(http + "/v2/trace/setting", json.dumps({"trace_file": "t.json"}).encode())
        assert status == 501 and b"trace_file cannot be set with --frontend-processes > 1" in out
        for _ in range(6):
            assert json.loads(_get(http + "/v2/logging")[1])["log_verbose_level"] == 2
            assert json.loads(_get(http + "/v2/trace/setting")[1])["trace_rate"] == "7"
        # a bad request is still answered by Triton's words
        status, out = _get(http + "/v2/models/missing/stats")
        assert status == 404 and b"requested model 'missing' is not available" in out
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "front-end process 0 of 2" in out and "front-end process 1 of 2" in out


@linux_only
def test_a_second_server_on_the_same_ports_is_refused(tmp_path):
    """Another --frontend-processes server must not take a share of the connections."""
    first, ports = _start(tmp_path / "a", {"simple": SIMPLE}, 2)
    http = f"http://127.0.0.1:{ports['http']}"
    try:
        wait_until(lambda: first.poll() is not None or _get(http + "/v2/health/ready")[0] == 200,
                   "the first server ready")
        assert first.poll() is None, _stop(first)
        args = ["--model-repository", str(tmp_path / "a" / "models"), "--frontend-processes", "2"]
        for name, port in ports.items():
            args += [f"--{name}-address", "127.0.0.1", f"--{name}-port", str(port)]
        second = subprocess.run([sys.executable, "-m", "triton_core.cli", *args],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stdout + second.stderr
        assert (f"failed to start HTTP service: 127.0.0.1:{ports['http']} is already in use"
                in second.stdout + second.stderr)
        assert _get(http + "/v2/health/ready")[0] == 200  # the first serves on
    finally:
        out = _stop(first)
    assert first.returncode == 0, out


@linux_only
def test_a_sequence_batched_model_does_not_load(tmp_path):
    # with --exit-on-error (the default) the start stops, naming the model and the reason
    proc, _ = _start(tmp_path, {"simple": SIMPLE, "counter": SEQUENCE}, 2)
    try:
        proc.wait(timeout=120)
    finally:
        out = _stop(proc)
    assert proc.returncode == 1, out
    assert ("failed to load 'counter': --frontend-processes > 1 cannot serve sequence-batched "
            "models") in out


@linux_only
def test_without_exit_on_error_the_sequence_model_is_unavailable_and_the_rest_serves(tmp_path):
    proc, ports = _start(tmp_path, {"simple": SIMPLE, "counter": SEQUENCE}, 2,
                         "--exit-on-error", "false", "--strict-readiness", "false")
    http = f"http://127.0.0.1:{ports['http']}"
    try:
        wait_until(lambda: proc.poll() is not None or all(
            _get(http + "/v2/models/simple/ready")[0] == 200 for _ in range(8)),
            "simple ready in both processes")
        assert proc.poll() is None, _stop(proc)
        for _ in range(4):
            index = json.loads(_get(http + "/v2/repository/index", b"{}")[1])
            counter = next(m for m in index if m["name"] == "counter")
            assert counter["state"] == "UNAVAILABLE"
            assert "cannot serve sequence-batched models" in counter["reason"]
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out


@linux_only
def test_a_shared_memory_region_registered_through_one_process_serves_in_all(tmp_path):
    proc, ports = _start(tmp_path, {"simple": SIMPLE}, 2, "--allow-client-shm", "true")
    http = f"http://127.0.0.1:{ports['http']}"
    region = shared_memory.SharedMemory(create=True, size=128)
    try:
        wait_until(lambda: proc.poll() is not None or all(
            _get(http + "/v2/health/ready")[0] == 200 for _ in range(8)), "both processes ready")
        assert proc.poll() is None, _stop(proc)
        np.ndarray((2, 16), np.int32, region.buf)[:] = [np.arange(16), np.full(16, 5)]
        register = json.dumps({"key": "/" + region.name, "offset": 0, "byte_size": 128}).encode()
        status, out = _get(http + "/v2/systemsharedmemory/region/in/register", register)
        assert status == 200, out
        status, out = _get(http + "/v2/systemsharedmemory/region/in/register", register)
        assert status == 400 and b"shared memory region 'in' already in manager" in out
        body = json.dumps({"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16],
             "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 64}},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16],
             "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 64,
                            "shared_memory_offset": 64}}]}).encode()
        for _ in range(8):  # fresh connections: both processes read the region
            assert json.loads(_get(http + "/v2/systemsharedmemory/status")[1])[0]["name"] == "in"
            status, out = _get(http + "/v2/models/simple/infer", body)
            assert status == 200, out
            assert json.loads(out)["outputs"][0]["data"] == [i + 5 for i in range(16)]
        status, out = _get(http + "/v2/cudasharedmemory/region/gpu/register", json.dumps(
            {"raw_handle": {"b64": base64.b64encode(bytes(64)).decode()}, "device_id": 0,
             "byte_size": 8}).encode())
        assert status != 200 and b"not available with --frontend-processes > 1" in out
        assert _get(http + "/v2/systemsharedmemory/region/in/unregister", b"")[0] == 200
        for _ in range(6):
            assert json.loads(_get(http + "/v2/systemsharedmemory/status")[1]) == []
    finally:
        out = _stop(proc)
        region.close()
        region.unlink()
    assert proc.returncode == 0, out


_SUPERVISED = """
import os, signal, sys
from triton_core.frontend_processes import supervise

folder, mode = sys.argv[1], sys.argv[2]

def child(index):
    open(os.path.join(folder, str(index)), "w").close()
    if mode == "fail" and index == 1:
        return 3
    if mode == "killed" and index == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # from elsewhere: the parent was not asked
    signal.pause()  # SIGTERM kills it as a child still starting would be killed (SIG_DFL)
    return 0

sys.exit(supervise(2, child))
"""


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_children_still_starting_that_die_of_the_stop_signal_are_a_clean_stop(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-c", _SUPERVISED, str(tmp_path), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: (tmp_path / "0").exists() and (tmp_path / "1").exists(),
               "both children running")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "exited with status" not in out


def _supervised(tmp_path: Path, mode: str) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", _SUPERVISED, str(tmp_path), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


@linux_only
def test_a_child_that_fails_stops_the_others_and_gives_its_status(tmp_path):
    rc, out = _supervised(tmp_path, "fail")
    assert rc == 3, out


@linux_only
def test_a_child_killed_by_a_signal_the_parent_was_not_sent_is_a_failure(tmp_path):
    rc, out = _supervised(tmp_path, "killed")
    assert rc == 1, out
    assert "front-end process 1 exited with status -15; stopping the others" in out
