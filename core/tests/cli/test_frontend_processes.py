"""--frontend-processes N: N server processes on the same ports answer as one server
(statistics, metrics and settings over all of them), and what one process alone would
change is refused at start-up."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
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


# glog's `I1208 02:23:04.122929 13686 cli.py:471] message`: the pid says which process spoke
_LOG_LINE = re.compile(r"[IWEV]\d{4} \d\d:\d\d:\d\d\.\d{6} (\d+) [^\s\]]+\] (.*)")
_WHICH = re.compile(r"\(front-end process (\d+) of \d+\)")  # logged as each process starts


class _Server:
    """A server _start started: its process, its ports and what it has printed so far (a
    reader thread collects the lines, so a test can wait for one and still show them all)."""

    def __init__(self, proc: subprocess.Popen, ports: dict[str, int]) -> None:
        self.proc = proc
        self.ports = ports
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # until every process has exited (EOF)
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def started(self, n: int) -> bool:
        """Whether each of the n processes logged that all its services listen: HTTP and
        gRPC in every one, metrics in process 0 (the one metrics port)."""
        index: dict[str, int] = {}
        said: dict[str, set[str]] = {}
        for line in list(self.lines):
            # search, not match: another process's output may precede a line in the pipe
            m = _LOG_LINE.search(line)
            if m is None:
                continue
            pid, message = m.groups()
            if (which := _WHICH.search(message)) is not None:
                index[pid] = int(which.group(1))
            elif message.startswith("Started "):
                said.setdefault(pid, set()).add(message.split(" at ")[0])
        pids = {i: pid for pid, i in index.items()}
        services = {"Started HTTPService", "Started GRPCInferenceService"}
        return all(i in pids and services | ({"Started Metrics Service"} if i == 0 else set())
                   <= said.get(pids[i], set()) for i in range(n))


def _start(tmp_path: Path, models: dict[str, str], n: int, *extra: str) -> _Server:
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
    return _Server(proc, ports)


def _wait_started(server: _Server, n: int = 2) -> None:
    """Until every process listens (its own "Started ..." lines): connections that answer
    prove nothing, as the kernel may hand them all to one process while another starts."""
    try:
        wait_until(lambda: server.proc.poll() is not None or server.started(n),
                   f"all {n} front-end processes to start", timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_stop(server)}") from None
    assert server.proc.poll() is None, _stop(server)


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


def _stop(server: _Server) -> str:
    """Stop the server as a user would (SIGTERM); all it printed. Safe to call again."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # no server left behind for the next test
            proc.kill()
            proc.wait()
    server.reader.join(60)
    return server.output()


@linux_only
def test_two_processes_answer_as_one_server(tmp_path):
    server = _start(tmp_path, {"simple": SIMPLE}, 2)
    ports = server.ports
    http = f"http://127.0.0.1:{ports['http']}"
    try:
        _wait_started(server)
        for _ in range(8):  # ready, whichever process a connection reaches
            assert _get(http + "/v2/health/ready")[0] == 200
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
        out = _stop(server)
    assert server.proc.returncode == 0, out
    assert "front-end process 0 of 2" in out and "front-end process 1 of 2" in out


@linux_only
def test_a_second_server_on_the_same_ports_is_refused(tmp_path):
    """Another --frontend-processes server must not take a share of the connections."""
    first = _start(tmp_path / "a", {"simple": SIMPLE}, 2)
    ports = first.ports
    http = f"http://127.0.0.1:{ports['http']}"
    try:
        _wait_started(first)  # both its processes hold the ports
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
    assert first.proc.returncode == 0, out


@linux_only
def test_a_sequence_batched_model_does_not_load(tmp_path):
    # with --exit-on-error (the default) the start stops, naming the model and the reason
    server = _start(tmp_path, {"simple": SIMPLE, "counter": SEQUENCE}, 2)
    try:
        server.proc.wait(timeout=120)
    finally:
        out = _stop(server)
    assert server.proc.returncode == 1, out
    assert ("failed to load 'counter': --frontend-processes > 1 cannot serve sequence-batched "
            "models") in out


@linux_only
def test_without_exit_on_error_the_sequence_model_is_unavailable_and_the_rest_serves(tmp_path):
    server = _start(tmp_path, {"simple": SIMPLE, "counter": SEQUENCE}, 2,
                    "--exit-on-error", "false", "--strict-readiness", "false")
    http = f"http://127.0.0.1:{server.ports['http']}"
    try:
        _wait_started(server)
        for _ in range(4):
            assert _get(http + "/v2/models/simple/ready")[0] == 200
            index = json.loads(_get(http + "/v2/repository/index", b"{}")[1])
            counter = next(m for m in index if m["name"] == "counter")
            assert counter["state"] == "UNAVAILABLE"
            assert "cannot serve sequence-batched models" in counter["reason"]
    finally:
        out = _stop(server)
    assert server.proc.returncode == 0, out


@linux_only
def test_a_shared_memory_region_registered_through_one_process_serves_in_all(tmp_path):
    server = _start(tmp_path, {"simple": SIMPLE}, 2, "--allow-client-shm", "true")
    http = f"http://127.0.0.1:{server.ports['http']}"
    region = shared_memory.SharedMemory(create=True, size=128)
    try:
        _wait_started(server)
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
        out = _stop(server)
        region.close()
        region.unlink()
    assert server.proc.returncode == 0, out


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
