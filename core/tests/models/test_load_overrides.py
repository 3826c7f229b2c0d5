"""Load requests with file overrides: bad names are the client's error, and the temporary
folder of a load goes away on every failure (only a loaded model's folder stays)."""

from __future__ import annotations

import base64
import json
import tempfile

import numpy as np
import pytest

from expr_backend import ADD_SUB, make_server, write_model
from triton_core.errors import ErrorCode, TritonError

CFG = {"backend": "expr", "max_batch_size": 0,
       "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [2]}],
       "output": [{"name": "B", "data_type": "TYPE_FP32", "dims": [2]}],
       "parameters": {"B": {"string_value": "A * 3"}}}
OK = base64.b64encode(b"ok").decode()
FILES = {"1/model.expr": OK}


@pytest.fixture
def tmpdir_(tmp_path, monkeypatch):
    """tempfile's folder, watched: every temporary folder a load makes lands here."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def server(tmp_path):
    write_model(tmp_path / "repo", "add", ADD_SUB)
    s = make_server(tmp_path / "repo", model_control_mode="explicit")
    with s:
        yield s


def _left(d):
    return sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize("bad", ["1/" + "m" * 256, "1/model\0.expr", "x" * 300 + "/model.expr",
                                 "1/" + "é" * 200, "a/" * 2100 + "model.expr"],
                         ids=["long-file", "nul", "long-folder", "long-utf8", "long-path"])
def test_bad_file_names_refused_leaving_nothing(server, tmpdir_, bad):
    with pytest.raises(TritonError) as e:
        server.load_model("fresh", json.dumps(CFG), {**FILES, bad: OK})
    assert e.value.code is ErrorCode.INVALID_ARG, e.value.message
    assert "invalid file path" in e.value.message or "too long" in e.value.message
    assert _left(tmpdir_) == []


def test_long_model_name_refused(server, tmpdir_):
    for name in ("m" * 256, "é" * 128):
        with pytest.raises(TritonError) as e:
            server.load_model(name, json.dumps(CFG), FILES)
        assert e.value.code is ErrorCode.INVALID_ARG and "invalid model name" in e.value.message
    assert _left(tmpdir_) == []
    server.load_model("m" * 255, json.dumps(CFG), FILES)  # the longest name is fine
    assert server.model_ready("m" * 255)


def test_folder_removed_when_the_os_refuses(server, tmpdir_):
    # past the server's name check (the manager alone): mkdir itself fails
    with pytest.raises(TritonError) as e:
        server.manager.load("m" * 300, json.dumps(CFG), FILES)
    assert "too long" in e.value.message
    assert _left(tmpdir_) == []


def test_failed_load_removes_its_folder_and_keeps_the_serving_one(server, tmpdir_):
    server.load_model("fresh", json.dumps(CFG), FILES)
    kept = _left(tmpdir_)
    assert len(kept) == 1
    bad = {**CFG, "max_batch_size": -4}
    for cfg, files in ((bad, FILES), (CFG, {"1/model.expr": "!!!"}), ("{not json", FILES)):
        with pytest.raises(TritonError):
            server.load_model("fresh", cfg if isinstance(cfg, str) else json.dumps(cfg), files)
        assert _left(tmpdir_) == kept
    out = server.model("fresh").infer({"A": np.array([1, 2], np.float32)})
    np.testing.assert_array_equal(out["B"], [3, 6])
    # a reload replaces the folder; an unload removes it
    server.load_model("fresh", json.dumps(CFG), FILES)
    assert len(_left(tmpdir_)) == 1 and _left(tmpdir_) != kept
    server.unload_model("fresh")
    assert _left(tmpdir_) == []


def test_config_override_not_json_says_failed_to_load(server):
    # Triton's simple_{http,grpc}_model_control.py examples look for "failed to load"
    bad = '"parameters": {"config": {{"max_batch_size": "16"}}}'
    server.load_model("add")
    with pytest.raises(TritonError) as e:
        server.load_model("add", bad)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert e.value.message.startswith("failed to load 'add': Invalid config override: ")
    assert "not valid JSON" in e.value.message
    assert server.model_ready("add")  # the loaded version keeps serving
