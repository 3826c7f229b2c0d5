"""End-to-end: every non-infer REST route over real HTTP (tritonclient.http + raw HTTP)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from expr_backend import ADD_SUB, make_server, write_model
from http_helpers import add_inputs, assert_serves, error_of, request
from live_server import serving_http


def _status(e: pytest.ExceptionInfo) -> str:
    return e.value.status()


# health and metadata -------------------------------------------------------------------

def test_health(client, addr):
    assert client.is_server_live()
    assert client.is_server_ready()
    for route in ("live", "ready"):
        status, _, body = request(addr, "GET", f"/v2/health/{route}")
        assert status == 200 and body == b""
        status, _, body = request(addr, "POST", f"/v2/health/{route}")
        assert status == 405 and error_of(body)


def test_server_metadata(client):
    md = client.get_server_metadata()
    assert md["name"] == "triton" and md["version"]
    for ext in ("classification", "model_repository", "binary_tensor_data", "statistics",
                "logging", "parameters", "model_configuration"):
        assert ext in md["extensions"]
    # not enabled: not advertised
    assert "system_shared_memory" not in md["extensions"]


def test_model_metadata(client):
    md = client.get_model_metadata("add")
    assert md["name"] == "add" and md["versions"] == ["1"] and md["platform"] == "expr_platform"
    assert md["inputs"] == [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
                            {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]}]
    assert [o["name"] for o in md["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    # no batching: no leading -1
    smd = client.get_model_metadata("strings")
    assert smd["inputs"] == [{"name": "INPUT0", "datatype": "BYTES", "shape": [-1]}]
    # versions
    assert client.get_model_metadata("multi")["versions"] == ["1", "2"]
    assert client.get_model_metadata("multi", "1")["name"] == "multi"
    assert client.get_model_metadata("multi", "2")["versions"] == ["1", "2"]


def test_model_ready(client, addr):
    assert client.is_model_ready("add")
    assert client.is_model_ready("multi", "1") and client.is_model_ready("multi", "2")
    assert not client.is_model_ready("multi", "3")
    assert not client.is_model_ready("nope")
    status, _, body = request(addr, "GET", "/v2/models/nope/ready")
    assert status == 400 and body == b""
    assert request(addr, "GET", "/v2/models/add/versions/1/ready")[0] == 200


def test_model_config(client):
    cfg = client.get_model_config("add")
    assert cfg["name"] == "add" and cfg["backend"] == "expr" and cfg["max_batch_size"] == 8
    assert cfg["input"][0]["data_type"] == "TYPE_INT32" and cfg["input"][0]["dims"] == [16]
    assert [o["name"] for o in cfg["output"]] == ["OUTPUT0", "OUTPUT1"]
    assert client.get_model_config("multi", "2")["name"] == "multi"
    cls = client.get_model_config("cls")
    assert cls["output"][0]["label_filename"] == "labels.txt"


@pytest.mark.parametrize("path", [
    "/v2/models/nope", "/v2/models/nope/config", "/v2/models/nope/stats",
    "/v2/models/add/versions/7", "/v2/models/add/versions/7/config",
    "/v2/models/add/versions/7/stats",
])
def test_unknown_model_or_version_404(addr, path):
    status, headers, body = request(addr, "GET", path)
    assert status == 404, body
    assert headers["content-type"].startswith("application/json")
    assert error_of(body)
    assert_serves(addr)


def test_unknown_model_via_client(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert _status(e) == "404" and "nope" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_config("add", "9")
    assert _status(e) == "404"


@pytest.mark.parametrize("path", [
    "/v2/models/add/versions/abc", "/v2/models/add/versions/abc/config",
    "/v2/models/add/versions/1.5/stats", "/v2/models/add/versions/x/ready",
])
def test_non_numeric_version_400(addr, path):
    status, _, body = request(addr, "GET", path)
    assert status == 400
    if body:  # ready answers an empty body
        assert "version" in error_of(body)
    assert_serves(addr)


@pytest.mark.parametrize("method, path", [
    ("POST", "/v2"), ("POST", "/v2/models/add"), ("POST", "/v2/models/add/config"),
    ("POST", "/v2/models/add/ready"), ("GET", "/v2/models/add/infer"),
    ("POST", "/v2/models/stats"), ("POST", "/v2/models/add/stats"),
    ("GET", "/v2/repository/index"), ("GET", "/v2/repository/models/add/load"),
    ("GET", "/v2/repository/models/add/unload"), ("PUT", "/v2/logging"),
    ("DELETE", "/v2/health/live"),
])
def test_wrong_method_405(addr, method, path):
    status, _, body = request(addr, method, path)
    assert status == 405
    assert error_of(body)
    assert_serves(addr)


@pytest.mark.parametrize("path", ["/", "/v1/models", "/v2/nothing", "/v2/models/add/versions/1/x/y",
                                  "/v2/models/add/bogus", "/v2/health/other"])
def test_unknown_route_404(addr, path):
    status, _, body = request(addr, "GET", path)
    assert status in (404, 405)
    assert error_of(body)


# statistics ----------------------------------------------------------------------------

def test_statistics(client):
    a, b, ins = add_inputs()
    before = client.get_inference_statistics("add")["model_stats"][0]
    client.infer("add", ins)
    client.infer("multi", ins, model_version="1")
    allstats = client.get_inference_statistics()
    names = {(s["name"], s["version"]) for s in allstats["model_stats"]}
    assert {("add", "1"), ("multi", "1"), ("multi", "2"), ("strings", "1")} <= names
    one = client.get_inference_statistics("add")["model_stats"]
    assert len(one) == 1 and one[0]["name"] == "add" and one[0]["version"] == "1"
    assert int(one[0]["inference_count"]) == int(before["inference_count"]) + 1
    assert int(one[0]["inference_stats"]["success"]["count"]) >= 1
    for key in ("queue", "compute_input", "compute_infer", "compute_output", "fail"):
        assert key in one[0]["inference_stats"]
    both = client.get_inference_statistics("multi")["model_stats"]
    assert [s["version"] for s in both] == ["1", "2"]
    v2 = client.get_inference_statistics("multi", "2")["model_stats"]
    assert len(v2) == 1 and v2[0]["version"] == "2"
    assert int(v2[0]["inference_count"]) == 0
    v1 = client.get_inference_statistics("multi", "1")["model_stats"][0]
    assert int(v1["inference_count"]) >= 1
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert _status(e) == "404"


# repository: index on a NONE-mode server refuses load / unload ---------------------------

def test_repository_index(client, addr):
    idx = client.get_model_repository_index()
    rows = {(r["name"], r.get("version")): r for r in idx}
    assert rows[("add", "1")]["state"] == "READY"
    assert rows[("multi", "2")]["state"] == "READY"
    # ready filter, raw
    status, _, body = request(addr, "POST", "/v2/repository/index", json.dumps({"ready": True}))
    assert status == 200
    assert all(r["state"] == "READY" for r in json.loads(body))
    # empty body is allowed
    status, _, body = request(addr, "POST", "/v2/repository/index")
    assert status == 200 and isinstance(json.loads(body), list)


def test_load_refused_in_none_mode(client, addr):
    with pytest.raises(InferenceServerException) as e:
        client.load_model("add")
    assert _status(e) == "503" and "model control mode" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("add")
    assert _status(e) == "503"
    assert client.is_model_ready("add")


# logging -------------------------------------------------------------------------------

def test_logging_settings(client, addr):
    orig = client.get_log_settings()
    assert set(orig) == {"log_file", "log_info", "log_warning", "log_error",
                         "log_verbose_level", "log_format"}
    try:
        new = client.update_log_settings({"log_verbose_level": 2, "log_format": "ISO8601",
                                          "log_info": False})
        assert new["log_verbose_level"] == 2 and new["log_format"] == "ISO8601"
        assert new["log_info"] is False
        assert client.get_log_settings() == new
        # a client may not choose where the server writes
        with pytest.raises(InferenceServerException) as e:
            client.update_log_settings({"log_file": "/tmp/evil.log"})
        assert _status(e) in ("400", "501") and "log_file" in e.value.message()
        for bad in ({"log_verbose_level": -1}, {"log_verbose_level": "high"},
                    {"log_info": "yes"}, {"log_format": "xml"}, {"no_such": 1},
                    {"log_verbose_level": True}):
            status, _, body = request(addr, "POST", "/v2/logging", json.dumps(bad))
            assert status == 400, (bad, body)
            assert error_of(body)
        # a refused update changes nothing (checked before applied)
        status, _, body = request(addr, "POST", "/v2/logging",
                                  json.dumps({"log_verbose_level": 0, "log_format": "xml"}))
        assert status == 400
        assert client.get_log_settings()["log_verbose_level"] == 2
        for bad_body in (b"[1, 2]", b"{not json", b'"x"'):
            status, _, body = request(addr, "POST", "/v2/logging", bad_body)
            assert status == 400 and error_of(body)
    finally:
        restore = {k: v for k, v in orig.items() if k != "log_file"}
        client.update_log_settings(restore)
    assert client.get_log_settings() == orig
    assert_serves(addr)


# unsupported extensions ----------------------------------------------------------------

def test_unsupported_routes_501(client, addr):
    with pytest.raises(InferenceServerException) as e:
        client.get_cuda_shared_memory_status()
    # CUDA shared memory, like system shared memory, needs --allow-client-shm
    assert _status(e) == "501" and "allow-client-shm" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.register_cuda_shared_memory("r", b"\0" * 8, 0, 16)
    assert _status(e) == "501"
    with pytest.raises(InferenceServerException) as e:
        client.unregister_cuda_shared_memory()
    assert _status(e) == "501"
    # the trace extension answers (its own tests: core/tests/scheduling/test_trace.py)
    assert client.get_trace_settings()["trace_level"] == ["OFF"]
    assert client.get_trace_settings(model_name="add")["trace_rate"] == "1000"
    for method, path in (("POST", "/v2/cudasharedmemory/region/x/register"),):
        status, _, body = request(addr, method, path, b"{}" if method == "POST" else None)
        assert status == 501, (path, body)
        assert error_of(body)
    assert_serves(addr)


def test_system_shared_memory_disabled(client, addr):
    with pytest.raises(InferenceServerException) as e:
        client.get_system_shared_memory_status()
    assert _status(e) == "501"
    assert "shared memory" in e.value.message() and "allow-client-shm" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("r", "/some_key", 64)
    assert _status(e) == "501"
    with pytest.raises(InferenceServerException) as e:
        client.unregister_system_shared_memory()
    assert _status(e) == "501"
    # an infer naming a region answers an error, not a crash
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
                        "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 64}},
                       {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [0] * 16}]}
    status, _, rb = request(addr, "POST", "/v2/models/add/infer", json.dumps(body))
    assert status == 400 and "r" in error_of(rb)
    assert_serves(addr)


# repository load / unload (EXPLICIT mode) ------------------------------------------------

@pytest.fixture
def explicit(tmp_path):
    write_model(tmp_path / "repo", "add", ADD_SUB)
    write_model(tmp_path / "repo", "other", ADD_SUB)
    server = make_server(tmp_path / "repo", model_control_mode="explicit", load_model=["add"])
    server.start()
    try:
        with serving_http(server) as a:
            yield a, tmp_path
    finally:
        server.stop()


FRESH_CONFIG = {
    "backend": "expr", "max_batch_size": 0,
    "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [2]}],
    "output": [{"name": "B", "data_type": "TYPE_FP32", "dims": [2]}],
    "parameters": {"B": {"string_value": "A * 3"}},
}


def test_load_unload(explicit):
    addr, _ = explicit
    c = httpclient.InferenceServerClient(addr)
    assert c.is_model_ready("add") and not c.is_model_ready("other")
    idx = {r["name"]: r for r in c.get_model_repository_index()}
    assert idx["other"].get("state", "UNKNOWN") in ("UNKNOWN", "UNAVAILABLE")
    c.load_model("other")
    assert c.is_model_ready("other")
    c.unload_model("other")
    assert not c.is_model_ready("other")
    idx = {r["name"]: r for r in c.get_model_repository_index()}
    assert idx["other"]["state"] == "UNAVAILABLE"
    # unload_dependents is accepted
    c.load_model("other")
    c.unload_model("other", unload_dependents=True)
    assert not c.is_model_ready("other")
    # an unknown model
    with pytest.raises(InferenceServerException) as e:
        c.load_model("nope")
    assert _status(e) in ("400", "404") and "nope" in e.value.message()
    assert_serves(addr)
    c.close()


def test_load_config_override(explicit):
    addr, _ = explicit
    c = httpclient.InferenceServerClient(addr)
    cfg = json.loads(json.dumps(c.get_model_config("add")))
    cfg["parameters"]["OUTPUT0"] = {"string_value": "INPUT0 * 100"}
    c.load_model("add", config=json.dumps(cfg))
    a, b, ins = add_inputs()
    out = c.infer("add", ins).as_numpy("OUTPUT0")
    assert (out == a * 100).all()
    # a bad config override: 400, the old version keeps serving
    with pytest.raises(InferenceServerException) as e:
        c.load_model("add", config=json.dumps({"backend": "expr", "max_batch_size": -4}))
    assert _status(e) == "400"
    with pytest.raises(InferenceServerException) as e:
        c.load_model("add", config="{not json")
    assert _status(e) == "400"
    assert (c.infer("add", ins).as_numpy("OUTPUT0") == a * 100).all()
    c.close()


def _load_raw(addr, name, params):
    return request(addr, "POST", f"/v2/repository/models/{name}/load",
                   json.dumps({"parameters": params}))


def test_load_file_overrides(explicit):
    addr, tmp = explicit
    c = httpclient.InferenceServerClient(addr)
    c.load_model("fresh", config=json.dumps(FRESH_CONFIG), files={"file:1/model.expr": b"ok"})
    inp = httpclient.InferInput("A", [2], "FP32")
    inp.set_data_from_numpy(np.array([1, 2], np.float32))
    assert list(c.infer("fresh", [inp]).as_numpy("B")) == [3, 6]
    # raw, with a nested folder and a second version; the files land in a fresh folder
    params = {"config": json.dumps({**FRESH_CONFIG, "version_policy": {"all": {}}}),
              "file:1/model.expr": base64.b64encode(b"ok").decode(),
              "file:2/model.expr": base64.b64encode(b"ok").decode(),
              "file:extra/notes.txt": base64.b64encode(b"hello").decode()}
    status, _, body = _load_raw(addr, "fresh", params)
    assert status == 200, body
    assert c.get_model_metadata("fresh")["versions"] == ["1", "2"]
    assert not (tmp / "repo" / "fresh").exists()
    # file overrides without config
    status, _, body = _load_raw(addr, "fresh2", {"file:1/model.expr": "b2s="})
    assert status == 400 and "config" in error_of(body)
    # not base64
    status, _, body = _load_raw(addr, "fresh2", {"config": json.dumps(FRESH_CONFIG),
                                                 "file:1/model.expr": "!!!"})
    assert status == 400 and "base64" in error_of(body)
    c.close()


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/../../b", "1/../../../escape", "..",
                                 "a\\..\\b", ""])
def test_load_path_escaping_refused(explicit, bad):
    addr, tmp = explicit
    params = {"config": json.dumps(FRESH_CONFIG), "file:1/model.expr": "b2s=",
              f"file:{bad}": base64.b64encode(b"pwned").decode()}
    status, _, body = _load_raw(addr, "evil", params)
    assert status == 400, body
    assert error_of(body)
    for p in (tmp / "x", tmp / "b", tmp / "escape", tmp.parent / "x", tmp.parent / "b"):
        assert not p.exists()
    assert not Path("/abs").exists()
    assert_serves(addr)


def test_load_bad_bodies(explicit):
    addr, _ = explicit
    for body in (b"{oops", b"[]", b'{"parameters": 5}', b'{"parameters": {"config": 5}}',
                 b'{"parameters": {"config": "{}", "file:1/m": 7}}'):
        status, _, rb = request(addr, "POST", "/v2/repository/models/fresh/load", body)
        assert status == 400, (body, rb)
        assert error_of(rb)
    status, _, rb = request(addr, "POST", "/v2/repository/models/add/unload", b"{oops")
    assert status == 400 and error_of(rb)
    status, _, rb = request(addr, "POST", "/v2/repository/models/add/unload",
                            b'{"parameters": {"unload_dependents": "no"}}')
    assert status == 400 and "unload_dependents" in error_of(rb)
    for body in (b'{"ready": "no"}', b"[1]"):
        status, _, rb = request(addr, "POST", "/v2/repository/index", body)
        assert status == 400 and error_of(rb)
    # model names that are not a plain folder name
    for name in ("..", "%2E%2E", ".", "%2E"):
        for params in ({}, {"config": json.dumps(FRESH_CONFIG), "file:1/model.expr": "b2s="}):
            status, _, rb = _load_raw(addr, name, params)
            assert status == 400, (name, rb)
            assert "invalid model name" in error_of(rb)
    for name in ("a%2Fb", "..%2Fother"):
        status, _, rb = _load_raw(addr, name, {})
        assert status in (400, 404) and error_of(rb)
    assert_serves(addr)


def test_verbose_logging_prints_each_request(http_server, addr, caplog):
    import logging

    import tritonclient.http as httpclient

    http_server.log_settings.update({"log_verbose_level": 1})
    try:
        with caplog.at_level(1, logger="triton_core"):
            httpclient.InferenceServerClient(addr).is_server_live()
        assert any("HTTP request: GET /v2/health/live" in r.getMessage() for r in caplog.records)
    finally:
        http_server.log_settings.update({"log_verbose_level": 0})
        logging.getLogger("triton_core").setLevel(logging.INFO)


def test_a_call_across_front_end_processes_never_holds_the_loop(tmp_path: Path) -> None:
    """With --frontend-processes N > 1 the statistics wait on the other processes' sockets
    (up to 5 s each): the loop serves other requests meanwhile."""
    import threading
    import urllib.request

    from live_server import serving_http

    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as server:
        import types

        # as with --frontend-processes N > 1, with no other process to add
        server.peers = types.SimpleNamespace(ask_others=lambda *a, **k: [])
        entered, gate = threading.Event(), threading.Event()
        here = server.statistics

        def waits_on_a_peer(*args):
            entered.set()
            gate.wait(30)
            return here(*args)

        server.statistics = waits_on_a_peer
        with serving_http(server) as url:
            base = url if url.startswith("http") else f"http://{url}"
            got: list[int] = []
            t = threading.Thread(target=lambda: got.append(
                urllib.request.urlopen(base + "/v2/models/stats", timeout=60).status))
            t.start()
            try:
                assert entered.wait(30)
                # answered while the statistics call still waits
                assert urllib.request.urlopen(base + "/v2/health/live", timeout=20).status == 200
            finally:
                gate.set()
                t.join(60)
            assert got == [200]
        server.peers = None
