"""The loop driver over the python backend: requests sent from the event loop
(begin_execute) and read when the worker's channel turns readable; spinning and idle CPU."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import psutil
import pytest
from python_backend_helpers import build_repo, make_server

from triton_backend_python import backend
from triton_core import InferenceRequest, Tensor, TritonError
from triton_core.scheduling.loop_driver import LoopDriver
from triton_core.testing import wait_until


def _req(model: str, **arrays: np.ndarray) -> InferenceRequest:
    return InferenceRequest(model, inputs={k: Tensor.from_numpy(k, v) for k, v in arrays.items()})


def _x(x: float) -> np.ndarray:
    return np.array([x], dtype=np.float32)


@pytest.fixture(params=["1000", "0"], ids=["spin", "no-spin"])
def server(request, tmp_path, monkeypatch):
    repo = build_repo(tmp_path, ["faults", "add_sub"])
    # No request here hangs: a longer execute timeout than the faults model's 1 s keeps a
    # worker's death on a loaded machine from reading as a timeout.
    cfg = repo / "faults" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('string_value: "1" }', 'string_value: "30" }'))
    s = make_server(repo, backend_config={"python": {"spin-microseconds": request.param}})
    s.start()
    try:
        yield s
    finally:
        s.stop()


@contextlib.asynccontextmanager
async def attached(server) -> AsyncIterator[int]:
    """Serve on the running loop as a front end does; yields its thread id."""
    loop = asyncio.get_running_loop()
    server.engine_loop.attach(loop)
    try:
        yield threading.get_ident()
    finally:
        server.engine_loop.detach(loop)


def test_python_models_get_the_loop_driver(server):
    assert all(isinstance(d, LoopDriver) for n in ("faults", "add_sub")
               for d in server.manager.get(n).drivers)


def test_loop_path_results_slow_calls_and_failures(server):
    inst = server.manager.get("faults").instances[0]
    begun: list[int] = []
    orig = inst.begin_execute

    def spy(requests, timer):
        begun.append(threading.get_ident())
        return orig(requests, timer)

    inst.begin_execute = spy

    async def run():
        async with attached(server) as me:
            a = np.arange(16, dtype=np.float32).reshape(1, 16)
            for _ in range(12):
                resp = await server.infer_async(_req("add_sub", INPUT0=a, INPUT1=a))
                np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), a + a)
            for i in range(12):
                resp = await server.infer_async(_req("faults", X=_x(10 + i)))
                assert resp.output("Y").as_numpy()[0] == 10 + i
            assert begun == [me] * 12  # every request sent from the loop
            # a slow reply: the loop runs on meanwhile (a thread takes the wait)
            slow = asyncio.create_task(server.infer_async(_req("faults", X=_x(5))))
            ticks = 0
            while not slow.done():
                ticks += 1
                await asyncio.sleep(0.002)
            assert ticks >= 5 and (await slow).output("Y").as_numpy()[0] == 5
            # an execute error and an error response fail their request only
            with pytest.raises(TritonError, match="boom in execute"):
                await server.infer_async(_req("faults", X=_x(1)))
            with pytest.raises(TritonError, match="bad value 2"):
                await server.infer_async(_req("faults", X=_x(2)))
            # the worker dies mid-request: UNAVAILABLE, then it is restarted
            with pytest.raises(TritonError, match="exited unexpectedly"):
                await server.infer_async(_req("faults", X=_x(3)))
            await asyncio.to_thread(wait_until, lambda: server.model_ready("faults"),
                                    "the worker restarted", 20)
            resp = await server.infer_async(_req("faults", X=_x(7)))
            assert resp.output("Y").as_numpy()[0] == 7

    asyncio.run(run())


def test_idle_worker_uses_no_cpu(server):
    a = np.ones((1, 16), dtype=np.float32)

    async def burst():
        for _ in range(50):
            await server.infer_async(_req("add_sub", INPUT0=a, INPUT1=a))

    asyncio.run(burst())
    worker = psutil.Process(server.manager.get("add_sub").instances[0].worker.pid)
    time.sleep(0.05)  # past any spin window
    before = sum(worker.cpu_times()[:2])
    time.sleep(1.0)
    assert sum(worker.cpu_times()[:2]) - before < 0.2


def test_concurrent_requests_are_read_when_they_come(server, monkeypatch):
    """Many requests at once: the loop sends them to the worker (two outstanding) and
    reads each answer when the channel turns readable, never waiting on it; a slow answer
    or a dead worker is left to a thread."""
    inst = server.manager.get("faults").instances[0]
    begun: list[int] = []
    orig = inst.begin_execute
    inst.begin_execute = lambda requests, timer: begun.append(threading.get_ident()) or orig(
        requests, timer)
    waits: list[tuple[int, float]] = []  # PendingExecute.wait calls
    started = backend._Started
    wait = started.wait
    monkeypatch.setattr(started, "wait", lambda self, timeout: waits.append(
        (threading.get_ident(), timeout)) or wait(self, timeout))

    async def one(x: float) -> float:
        return (await server.infer_async(_req("faults", X=_x(x)))).output("Y").as_numpy()[0]

    async def run() -> None:
        async with attached(server) as me:
            assert await asyncio.gather(*(one(10 + i) for i in range(30))) == [
                10 + i for i in range(30)]
            assert begun == [me] * 30
            assert not [w for w in waits if w[0] == me and w[1] > 0]
            # slower than the loop's patience: a thread takes it, the loop keeps ticking
            slow = asyncio.ensure_future(one(5))
            ticks = 0
            while not slow.done():
                ticks += 1
                await asyncio.sleep(0.002)
            assert ticks >= 5 and await slow == 5
            with pytest.raises(TritonError, match="boom in execute"):
                await one(1)
            # the worker dies: the channel turns readable without an answer
            with pytest.raises(TritonError, match="exited unexpectedly"):
                await one(3)
            await asyncio.to_thread(wait_until, lambda: server.model_ready("faults"),
                                    "the worker restarted", 20)
            assert await asyncio.gather(*(one(40 + i) for i in range(8))) == [
                40 + i for i in range(8)]

    asyncio.run(run())
    driver = server.manager.get("faults").drivers[0]
    assert isinstance(driver, LoopDriver) and not driver.out and not driver.away


def test_unload_while_the_loop_owns_the_worker(server):
    """Requests sent or backlogged on the loop when an unload starts finish normally;
    the unload waits for them and reaps the worker."""
    a = np.ones((1, 16), dtype=np.float32)
    worker = psutil.Process(server.manager.get("add_sub").instances[0].worker.pid)

    async def one() -> str:
        try:
            resp = await server.infer_async(_req("add_sub", INPUT0=a, INPUT1=a))
        except TritonError as e:
            return e.message
        np.testing.assert_array_equal(resp.output("OUTPUT0").as_numpy(), a + a)
        return "ok"

    async def run() -> list[str]:
        async with attached(server):
            assert await asyncio.gather(*(one() for _ in range(10))) == ["ok"] * 10
            tasks = [asyncio.ensure_future(one()) for _ in range(30)]
            await asyncio.sleep(0)  # every one sent or waiting in the queue
            lv = server.manager.get("add_sub")
            assert lv.drivers[0].out and len(lv.queue)  # type: ignore[attr-defined]
            unload = asyncio.ensure_future(asyncio.to_thread(server.manager.unload, "add_sub"))
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await asyncio.wait_for(unload, 30)
            return results

    assert asyncio.run(run()) == ["ok"] * 30
    assert not server.model_ready("add_sub")
    worker.wait(10)  # reaped


def test_the_worker_spins_only_for_a_lone_request(server, monkeypatch):
    """The EXEC frame's last element (lone) lets the worker spin for the next request;
    not when another request is already queued behind this one."""
    from triton_python_backend_utils import _wire

    sent: list[tuple] = []
    encode = _wire.encode

    def spy(obj):
        if isinstance(obj, tuple) and obj and obj[0] == _wire.EXEC:
            sent.append(obj)
        return encode(obj)

    monkeypatch.setattr(_wire, "encode", spy)
    a, b = np.full((1, 16), 2.0, np.float32), np.ones((1, 16), np.float32)
    server.infer(_req("add_sub", INPUT0=a, INPUT1=b))
    assert [frame[-1] for frame in sent] == [True]

    async def two() -> None:
        async with attached(server):
            await asyncio.gather(*(server.infer_async(_req("add_sub", INPUT0=a, INPUT1=b))
                                   for _ in range(2)))

    asyncio.run(two())
    assert [frame[-1] for frame in sent] == [True, True, False]  # the second one queued
