"""`triton check`: each mistake a new user makes gets the fix where one is likely."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_core.checker import check_repository

CONFIG = """name: "{name}"
backend: "testadd"
input [
  {{
    name: "INPUT0"
    data_type: {dtype}
    dims: [ 4 ]
  }}
]
output [
  {{
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }}
]
"""


def _model(repo: Path, name: str, text: str, version: bool = True) -> Path:
    folder = repo / name
    folder.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text)
    if version:
        (folder / "1").mkdir()
    return folder


def _check(path: Path) -> str:
    errors, lines = check_repository([path])
    assert errors
    return "\n".join(lines)


@pytest.mark.parametrize("mistake, hint", [
    (lambda t: t.replace("TYPE_FP32", "TYPE_FP3", 1), "did you mean TYPE_FP32? valid values: TYPE_INVALID"),
    (lambda t: t.replace("TYPE_FP32", "FP32", 1), "did you mean TYPE_FP32?"),
    (lambda t: t + "max_batch_sise: 4\n", "did you mean max_batch_size?"),
    (lambda t: t + "instance_group [{ kind: KIND_GPUU }]\n",
     "did you mean KIND_GPU? valid values: KIND_AUTO"),
    # the '}' closing the input's '{' (line 4) is missing: protobuf stops at line 10
    (lambda t: t.replace("    dims: [ 4 ]\n  }\n]\noutput", "    dims: [ 4 ]\n]\noutput", 1),
     "the '{' opened on line 4 is not closed: a '}' is probably missing at the end of line 7"),
    (lambda t: t + "dynamic_batching {\n", "the '{' opened on line 17 is never closed: add a '}'"),
    (lambda t: t + "}\n", "the '}' on line 17 closes nothing"),
])
def test_config_mistakes_get_a_hint(tmp_path, mistake, hint):
    _model(tmp_path, "m", mistake(CONFIG.format(name="m", dtype="TYPE_FP32")))
    assert hint in _check(tmp_path)


def test_a_model_folder_is_not_a_repository(tmp_path):
    folder = _model(tmp_path, "m", CONFIG.format(name="m", dtype="TYPE_FP32"))
    report = _check(folder)
    assert "looks like a model folder, not a repository" in report
    assert f"triton check {tmp_path.resolve()}" in report


def test_a_missing_path_and_a_file_are_told_apart(tmp_path):
    assert "it does not exist" in _check(tmp_path / "nope")
    (tmp_path / "config.pbtxt").write_text("")
    assert "it is a file, not a folder" in _check(tmp_path / "config.pbtxt")


def test_a_missing_version_folder_says_how_to_create_it(tmp_path, monkeypatch):
    from testing_backend import plugin

    import triton_core.checker as checker

    real = checker.BackendRegistry

    def registry():  # the core's test backend, whatever else is installed
        r = real()
        r.register_plugin(plugin, "test")
        return r

    monkeypatch.setattr(checker, "BackendRegistry", registry)
    _model(tmp_path, "m", CONFIG.format(name="m", dtype="TYPE_FP32"), version=False)
    assert f"no version folder: create '{tmp_path / 'm' / '1'}'" in _check(tmp_path)
