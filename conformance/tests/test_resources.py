"""The leak check's Resources snapshot: a model's leftover thread is reported; threads grpc adds
to its process-wide pools on its own are not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types

import pytest

from triton_conformance.harness import GRPC_POOL_THREADS, Resources
from triton_core import abi
from triton_core.request import InferenceResponse
from triton_core.server import Server

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="thread names come from /proc")

_stop = threading.Event()  # set at the end of a test: lets the leaked threads go


def _leaked_worker(kernel_name: str) -> None:
    if kernel_name:  # as a native library's thread would be named
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(kernel_name)
    _stop.wait()


class _LeakyModel(abi.Model):
    """Starts a thread when loaded and never stops it (close does nothing)."""

    def __init__(self, ctx: abi.ModelContext) -> None:
        self.config = ctx.config
        kernel_name = ctx.config.parameter("kernel_thread_name", "")
        threading.Thread(target=_leaked_worker, args=(kernel_name,), name="leaky-model",
                         daemon=True).start()

    def create_instance(self, ctx):
        return _Instance()


class _Instance(abi.Instance):
    def execute(self, requests, timer):
        return [InferenceResponse(outputs=[]) for _ in requests]


class _Backend(abi.Backend):
    def load_model(self, ctx):
        return _LeakyModel(ctx)


@abi.hookimpl
def triton_backends():
    yield abi.BackendSpec(name="leaky", factory=lambda ctx: _Backend(), description="leak-check tests")


_plugin = types.ModuleType("leaky_backend_plugin")
_plugin.triton_backends = triton_backends  # type: ignore[attr-defined]


def _server(tmp_path, kernel_name: str = "") -> Server:
    d = tmp_path / "models" / "leaky"
    (d / "1").mkdir(parents=True)
    param = (f'parameters {{ key: "kernel_thread_name" value {{ string_value: "{kernel_name}" }} }}'
             if kernel_name else "")
    (d / "config.pbtxt").write_text(textwrap.dedent(f"""
        name: "leaky"
        backend: "leaky"
        max_batch_size: 0
        {param}
        input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
        output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
        """))
    server = Server(model_repository=[tmp_path / "models"], model_control_mode="explicit")
    server.registry.register_plugin(_plugin, "leaky")
    server.start()
    return server


@pytest.fixture(autouse=True)
def _release_leaked_threads():
    _stop.clear()
    yield
    _stop.set()


@pytest.mark.parametrize("kernel_name", ["", "model_native"], ids=["python", "native-name"])
def test_model_thread_left_after_unload_is_reported(tmp_path, kernel_name):
    """What the conformance check does: warm up, snapshot, load / unload twice, compare."""
    server = _server(tmp_path, kernel_name)
    try:
        server.load_model("leaky")
        server.unload_model("leaky")
        base = Resources.now()
        for _ in range(2):
            server.load_model("leaky")
            server.unload_model("leaky")
        leaks = Resources.now().leaks_since(base)
    finally:
        server.stop()
    # Threads of earlier tests may end or start meanwhile, and /dev/shm is the machine's:
    # only the model's two threads must be named.
    threads = [x for x in leaks if "OS thread(s)" in x]
    assert len(threads) == 1 and threads[0].count("leaky-model") == 2, leaks
    if kernel_name and os.path.isdir("/proc/self/task"):
        assert threads[0].count(kernel_name) == 2, leaks


def test_a_thread_that_ends_does_not_hide_a_new_one():
    """Counting threads nets an ended thread against a new one; identities do not."""
    ending = threading.Thread(target=_stop.wait, name="ends-between-snapshots", daemon=True)
    ending.start()
    base = Resources.now()
    _stop.set()
    ending.join(5)
    _stop.clear()
    new = threading.Thread(target=_leaked_worker, args=("",), name="new-thread", daemon=True)
    new.start()
    threads = Resources.now().new_threads(base)
    _stop.set()
    new.join(5)
    assert any("new-thread" in x for x in threads), threads


@needs_proc
def test_native_thread_of_the_model_is_named():
    base = Resources.now()
    t = threading.Thread(target=_leaked_worker, args=("somelib-worker",), daemon=True)
    t.start()
    try:
        deadline = 100
        while deadline and "somelib-worker" not in Resources.now().native_threads.values():
            deadline -= 1
            _stop.wait(0.01)
        new = Resources.now().new_threads(base)
    finally:
        _stop.set()
        t.join(5)
    # Only threads: /dev/shm is the machine's, and other processes' objects come and go.
    assert any("somelib-worker" in x for x in new), new


@needs_proc
def test_grpc_timer_pool_growth_is_not_a_leak():
    """With the EventEngine listener off (triton_core's default) grpc runs its client-channel
    backup poller; the first time its timer fires, grpc's global timer pool grows by a thread
    that stays for the life of the process. Run in a fresh process (the pool grows once) with
    a short poll interval instead of the default 5 s."""
    code = textwrap.dedent("""
        import time
        from concurrent import futures

        import grpc

        from triton_conformance.harness import Resources

        def timers(r):
            return sum(n == "grpc_global_tim" for n in r.native_threads.values())

        server = grpc.server(futures.ThreadPoolExecutor(1))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        base = Resources.now()
        end = time.monotonic() + 10
        while timers(Resources.now()) <= timers(base) and time.monotonic() < end:
            time.sleep(0.02)
        now = Resources.now()
        print(timers(base), timers(now), now.new_threads(base))  # /dev/shm is the machine's
        channel.close()
        server.stop(0)
    """)
    env = dict(os.environ, GRPC_EXPERIMENTS="-event_engine_listener",
               GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS="300")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    before, after, leaks = r.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(after) > int(before), f"grpc's timer pool did not grow: {r.stdout}"
    assert leaks == "[]", r.stdout
    assert "grpc_global_tim" in GRPC_POOL_THREADS
