"""What a first-time user meets at the command line: usage, version, help for every flag,
and one clean line for a port that is taken."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from triton_core import ABI_VERSION, __version__
from triton_core.cli import build_parser, triton_main
from triton_core.testing import free_port


def test_triton_without_a_command_prints_its_usage(capsys):
    with pytest.raises(SystemExit) as e:
        triton_main([])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: triton")
    for command in ("serve", "backends", "check", "conformance"):
        assert command in out


def _fake_plugin_distribution(site: Path, name: str, version: str, entry_point: str) -> None:
    # an installed distribution as importlib.metadata reads it: a .dist-info folder on sys.path
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[triton_core]\n{entry_point} = not_imported.plugin\n")


@pytest.mark.parametrize("main", [triton_main, lambda argv: build_parser().parse_args(argv)],
                         ids=["triton", "tritonserver"])
def test_version_lists_the_core_and_each_installed_plugin(capsys, monkeypatch, tmp_path, main):
    _fake_plugin_distribution(tmp_path, "triton-backend-fakeversion", "7.8.9", "fakeversion")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"triton-core {__version__} (backend ABI {ABI_VERSION[0]}.{ABI_VERSION[1]})"
    # listed from its metadata: its module (not_imported.plugin) does not exist
    assert "  triton-backend-fakeversion 7.8.9 (plugin fakeversion)" in lines


def test_every_tritonserver_flag_has_help_and_shows_its_default():
    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:  # noqa: SLF001 - the parser's own list of flags
        if action.help == argparse.SUPPRESS:
            continue  # Triton's flags that are refused with a reason
        assert action.help, f"{action.option_strings} has no help text"
        default = action.default
        if default not in (None, [], "", argparse.SUPPRESS) and action.option_strings != ["--help"]:
            assert f"(default: {default})" in " ".join(text.split()), action.option_strings


def _taken_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("service", ["http", "grpc", "metrics"])
def test_a_busy_port_is_one_clean_line_naming_its_flag(tmp_path, service):
    taken = _taken_port()
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    ports[service] = taken.getsockname()[1]
    args = [sys.executable, "-m", "triton_core.cli", "--model-repository", str(tmp_path)]
    for name, port in ports.items():
        args += [f"--{name}-address", "127.0.0.1", f"--{name}-port", str(port)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("E")]
    assert len(errors) == 1, done.stderr
    assert f"127.0.0.1:{ports[service]} is already in use" in errors[0]
    assert f"--{service}-port" in errors[0]
    assert "Traceback" not in done.stderr and "never awaited" not in done.stderr, done.stderr
