"""Readiness probes (Kubernetes asks every few seconds, on the event loop) never wait for a
model's own is_ready(): they answer its last answer, asked again in the background."""

from __future__ import annotations

import time

from python_backend_helpers import build_repo, make_server

from waiting import wait_until


def test_a_hanging_is_ready_never_holds_a_probe(tmp_path):
    repo = build_repo(tmp_path, ["gated_ready"])
    flag = repo / "gated_ready" / "1" / "ready_flag"
    with make_server(repo) as s:
        wait_until(lambda: s.model_ready("gated_ready"), "the model's first answer")
        flag.write_text("hang")  # is_ready() now blocks in the worker
        t0 = time.monotonic()
        for _ in range(20):  # each probe answers at once (the old path waited 5 s each)
            s.model_ready("gated_ready")
        # below ONE wait of the old path, however loaded the machine: a margin, not a speed
        assert time.monotonic() - t0 < 4.5
        flag.write_text("not ready")
        wait_until(lambda: not s.model_ready("gated_ready"), "the model's 'not ready'")
        flag.write_text("ready")
        wait_until(lambda: s.model_ready("gated_ready"), "the model's 'ready' again")


def test_a_model_whose_is_ready_never_answers_reads_not_ready(tmp_path, monkeypatch):
    import triton_backend_python.control_channel as control_channel

    monkeypatch.setattr(control_channel, "READY_TIMEOUT_S", 0.2)
    repo = build_repo(tmp_path, ["gated_ready"])
    (repo / "gated_ready" / "1" / "ready_flag").write_text("hang")
    with make_server(repo) as s:
        wait_until(lambda: not s.model_ready("gated_ready"), "a hung is_ready() to read as not ready")
