"""What serving a broken repository prints: each load error once, in the log and in the model
table; and every line of the log with the glog prefix, whoever logs it."""

from __future__ import annotations

import logging
import re
import types

import pytest

from triton_core import Server, abi
from triton_core.cli import _print_tables
from triton_core.errors import TritonError
from triton_core.logsettings import LOGGER, LogSettings

CONFIG = """
backend: "broken"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def _plugin() -> types.ModuleType:
    class Backend(abi.Backend):
        def load_model(self, ctx):
            raise TritonError.invalid_arg(f"unable to load model '{ctx.name}': unreadable weights")

    @abi.hookimpl
    def triton_backends():
        yield abi.BackendSpec(name="broken", factory=lambda ctx: Backend())

    plugin = types.ModuleType("broken_backend_plugin")
    plugin.triton_backends = triton_backends  # type: ignore[attr-defined]
    return plugin


def test_each_load_error_is_said_once_and_shown_in_the_model_table(tmp_path, caplog):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text(CONFIG)
    server = Server(model_repository=[tmp_path])  # --exit-on-error: the start fails
    server.registry.register_plugin(_plugin(), "broken")
    with caplog.at_level(logging.INFO, logger="triton_core"):
        with pytest.raises(TritonError):
            server.start()
        _print_tables(server)
    assert server.load_errors == {"m": "unable to load model 'm': unreadable weights"}
    assert "failed to load 'm': unable to load model 'm': unreadable weights" in caplog.text
    assert caplog.text.count("failed to load 'm'") == 1
    table = caplog.records[-1].getMessage()
    assert re.search(r"\| m +\| 1? *\| UNAVAILABLE: unable to load model 'm': unreadable weights", table)


@pytest.fixture
def log_settings():
    root = logging.getLogger()
    before = (list(LOGGER.handlers), list(root.handlers), LOGGER.propagate, LOGGER.level)
    settings = LogSettings()
    yield settings
    LOGGER.handlers[:], root.handlers[:] = before[0], before[1]
    LOGGER.propagate, LOGGER.level = before[2], before[3]


def test_every_log_line_has_the_glog_prefix(log_settings, capsys):
    log_settings.install()
    LOGGER.info("from the core")
    logging.getLogger("triton_backend_someplugin").warning("from a plugin's own logger")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ("from the core", "from a plugin's own logger"), strict=True):
        assert re.match(r"[IW]\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+:\d+\] " + text, line), line
