"""Plugins' prestart: the plan the launcher reads from a server command line, the entry
points it calls (and the registry's switches it obeys), and the failures it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from triton_core import launcher, prestart
from triton_core.prestart import PrestartPlan


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for r in (a, b):
        (r / "m1").mkdir(parents=True)
    (a / ".hidden").mkdir()
    (a / "file.txt").write_text("")
    return a, b


def test_the_plan_reads_every_spelling_of_the_flags(repos):
    a, b = repos
    plan = launcher.plan_for([f"--model-repository={a}", "--http-port", "9", "--model-store",
                              str(b), "--strict-readiness", "--log-verbose", "1"])
    assert plan == PrestartPlan((str(a), str(b)), None)
    plan = launcher.plan_for(["--model-repository", str(a), "--model-control-mode=explicit",
                              "--load-model", "m1", "--load-model=gone"])
    assert plan == PrestartPlan((str(a),), ("m1", "gone"))
    assert plan.model_dirs() == [str(a / "m1")]
    everything = launcher.plan_for(["--model-repository", str(a), "--model-control-mode",
                                    "explicit", "--load-model", "*"])
    assert everything is not None and everything.models is None
    assert everything.model_dirs() == [str(a / "m1")]  # no hidden folder, no file


@pytest.mark.parametrize("argv", [
    ["--model-control-mode", "explicit"],  # nothing loads at start
    ["--frontend-processes", "2"],  # each process loads after the fork
    ["--frontend-processes", "two"],  # the server refuses it with its own words
    ["--model-repository"],  # no value
])
def test_no_plan_where_nothing_would_be_adopted(repos, argv):
    assert launcher.plan_for(["--model-repository", str(repos[0]), *argv]) is None


@pytest.mark.parametrize("argv", [
    ["--frontend-proc", "2"],  # the server's parser takes abbreviations: no guessing
    ["--model-control", "explicit"],
    ["--load", "m1"],
    ["--help"], ["-h"], ["--version"],  # no server starts
    ["--ray"],  # `triton serve --ray`: the replicas load the models, elsewhere
])
def test_no_plan_for_abbreviations_or_where_no_server_loads_here(repos, argv):
    assert launcher.plan_for(["--model-repository", str(repos[0]), *argv]) is None


def test_no_plan_without_a_local_repository(tmp_path):
    assert launcher.plan_for(["--model-repository", "s3://bucket/models"]) is None
    assert launcher.plan_for(["--model-repository", str(tmp_path / "absent")]) is None
    assert launcher.plan_for([]) is None


_PLUGIN = """
CALLS = []

def ok(plan):
    CALLS.append(plan)

def broken(plan):
    raise RuntimeError("no spare today")
"""


@pytest.fixture
def entry_points(tmp_path, monkeypatch):
    (tmp_path / "prestart_test_plugin.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [metadata.EntryPoint("ok", "prestart_test_plugin:ok", prestart.GROUP),
              metadata.EntryPoint("broken", "prestart_test_plugin:broken", prestart.GROUP)]
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group=None: [p for p in points if p.group == group])
    import importlib

    monkeypatch.delitem(sys.modules, "prestart_test_plugin", raising=False)
    return importlib.import_module("prestart_test_plugin")


def test_every_entry_point_runs_and_a_failure_is_reported_not_raised(entry_points, monkeypatch):
    monkeypatch.delenv("TRITON_CORE_PLUGINS", raising=False)
    monkeypatch.delenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plan = PrestartPlan(("/models",), None)
    failures = prestart.run(plan)
    assert entry_points.CALLS == [plan]
    assert failures == ["prestart 'broken' (prestart_test_plugin:broken) failed: RuntimeError: "
                        "no spare today"]


def test_the_registry_switches_apply(entry_points, monkeypatch):
    plan = PrestartPlan(("/models",), None)
    monkeypatch.setenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert prestart.run(plan) == [] and entry_points.CALLS == []
    monkeypatch.delenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("TRITON_CORE_PLUGINS", "ok,onnx")
    assert prestart.run(plan) == [] and entry_points.CALLS == [plan]


def test_the_launcher_and_the_installed_prestarts_import_only_the_standard_library(tmp_path):
    """Else the prestart would wait for what it is meant to overlap (numpy, pydantic)."""
    model = tmp_path / "m" / "1"
    model.mkdir(parents=True)
    (model / "model.py").write_text("class TritonPythonModel: pass\n")
    code = ("import json, sys; from triton_core import launcher; "
            "launcher._prestart(['--model-repository', sys.argv[1]]); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True, timeout=60)
    ours = {"triton_core", "triton_backend_python"}
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    foreign = {m for m in loaded - ours - set(sys.stdlib_module_names)
               if not m.startswith(("__editable__", "_distutils_hack", "__main__"))}
    assert not foreign, foreign
