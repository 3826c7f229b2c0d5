"""Readiness probes (Kubernetes asks every few seconds, on the event loop) never wait for a
model's own is_ready(): they answer its last answer, asked again in the background."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from python_backend_helpers import build_repo, make_server

from waiting import wait_until


def _set(flag: Path, state: str) -> None:
    """The model's flag, replaced at once: a write in place could be read half done (an
    empty file reads as 'not ready')."""
    tmp = flag.with_suffix(".tmp")
    tmp.write_text(state)
    os.replace(tmp, flag)


def test_a_hanging_is_ready_never_holds_a_probe(tmp_path, monkeypatch):
    import triton_backend_python.control_channel as control_channel

    # a question out this long reads as not ready: an hour, so the probes below answer the
    # last answer, and a probe that waited for the worker (up to it) would never return
    monkeypatch.setattr(control_channel, "READY_TIMEOUT_S", 3600.0)
    repo = build_repo(tmp_path, ["gated_ready"])
    flag = repo / "gated_ready" / "1" / "ready_flag"
    hanging = repo / "gated_ready" / "1" / "hanging"
    with make_server(repo) as s:
        wait_until(lambda: s.model_ready("gated_ready"), "the model's first answer")
        _set(flag, "hang")  # is_ready() now blocks in the worker until the flag changes
        answers: list[bool] = []

        def hung() -> bool:
            s.model_ready("gated_ready")  # asks again whenever no question is out
            return hanging.exists()

        def probe() -> None:  # on a thread: a probe that waits must not hold the test
            wait_until(hung, "is_ready() to block in the worker")
            answers.extend(s.model_ready("gated_ready") for _ in range(20))

        probes = threading.Thread(target=probe, daemon=True)
        probes.start()
        # is_ready() blocks until the probes are done: each answers without its answer
        wait_until(lambda: not probes.is_alive(), "the probes answered while is_ready() blocks")
        assert answers == [True] * 20  # the last answer ('ready') stands while it blocks
        _set(flag, "not ready")
        wait_until(lambda: not s.model_ready("gated_ready"), "the model's 'not ready'")
        _set(flag, "ready")
        wait_until(lambda: s.model_ready("gated_ready"), "the model's 'ready' again")


def test_a_model_whose_is_ready_never_answers_reads_not_ready(tmp_path, monkeypatch):
    import triton_backend_python.control_channel as control_channel

    monkeypatch.setattr(control_channel, "READY_TIMEOUT_S", 0.2)
    repo = build_repo(tmp_path, ["gated_ready"])
    _set(repo / "gated_ready" / "1" / "ready_flag", "hang")
    with make_server(repo) as s:
        wait_until(lambda: not s.model_ready("gated_ready"), "a hung is_ready() to read as not ready")


def test_the_model_is_asked_only_once_initialized(tmp_path, monkeypatch):
    """is_ready() runs on the model object that initialize creates: a question sent before
    (it used to follow the worker's start) found none, printed an AttributeError and read
    as not ready, so a probe right after the load could say 'not ready' wrongly."""
    from triton_backend_python import control_channel, worker
    from triton_python_backend_utils import _wire

    events: list[str] = []
    call, ready_now = worker.Worker.call, control_channel.ControlChannel.ready_now

    def recording_call(self, msg, timeout, what):
        reply = call(self, msg, timeout, what)
        if msg[0] == _wire.INITIALIZE:
            events.append("initialized")
        return reply

    def recording_ready_now(self):
        events.append("asked")
        return ready_now(self)

    monkeypatch.setattr(worker.Worker, "call", recording_call)
    monkeypatch.setattr(control_channel.ControlChannel, "ready_now", recording_ready_now)
    repo = build_repo(tmp_path, ["gated_ready"])
    with make_server(repo) as s:
        wait_until(lambda: s.model_ready("gated_ready"), "the model ready")
    assert events[:2] == ["initialized", "asked"], events
