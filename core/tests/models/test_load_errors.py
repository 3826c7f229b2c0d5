"""A backend bug at load is logged with its traceback once and reported as INTERNAL; an
interrupt is not turned into a load error."""

from __future__ import annotations

import logging
import types

import pytest

from triton_core import Server, abi
from triton_core.errors import ErrorCode, TritonError, as_triton_error

CONFIG = """
name: "m"
backend: "broken"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def _server(tmp_path, raised: BaseException) -> Server:
    class Backend(abi.Backend):
        def load_model(self, ctx):
            raise raised

    @abi.hookimpl
    def triton_backends():
        yield abi.BackendSpec(name="broken", factory=lambda ctx: Backend())

    plugin = types.ModuleType("broken_backend_plugin")
    plugin.triton_backends = triton_backends  # type: ignore[attr-defined]
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text(CONFIG)
    server = Server(model_repository=[tmp_path], model_control_mode="explicit")
    server.registry.register_plugin(plugin, "broken")
    server.start()
    return server


def test_a_backend_bug_at_load_is_logged_with_its_traceback(tmp_path, caplog):
    server = _server(tmp_path, ValueError("bad weights"))
    try:
        with caplog.at_level(logging.ERROR, logger="triton_core"), \
                pytest.raises(TritonError) as e:
            server.load_model("m")
    finally:
        server.stop()
    assert e.value.code is ErrorCode.INTERNAL
    assert e.value.message == "failed to load 'm': ValueError: bad weights"
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert len(logged) == 1 and "loading model 'm'" in logged[0].getMessage()


def test_an_interrupt_during_a_load_is_not_a_load_error(tmp_path):
    server = _server(tmp_path, KeyboardInterrupt())
    try:
        with pytest.raises(KeyboardInterrupt):
            server.load_model("m")
    finally:
        server.stop()


def test_as_triton_error_keeps_triton_errors_and_logs_others_once(caplog):
    err = TritonError.invalid_arg("no")
    assert as_triton_error(err, "x") is err
    with caplog.at_level(logging.ERROR, logger="triton_core"):
        got = as_triton_error(RuntimeError("boom"), "the thing")
    assert got.code is ErrorCode.INTERNAL and got.message == "RuntimeError: boom"
    assert [r.getMessage() for r in caplog.records] == ["the thing failed"]
