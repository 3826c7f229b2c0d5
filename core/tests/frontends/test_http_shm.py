import os

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from expr_backend import ADD_SUB, make_server, write_model
from live_server import serving_http


@pytest.fixture
def url(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path, allow_client_shm=True) as s, serving_http(s) as u:
        yield u


def test_system_shared_memory_round_trip(url):
    c = httpclient.InferenceServerClient(url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    nbytes = a.nbytes
    ih = shm.create_shared_memory_region("in_data", "/tc_test_in", nbytes * 2)
    oh = shm.create_shared_memory_region("out_data", "/tc_test_out", nbytes * 2)
    try:
        shm.set_shared_memory_region(ih, [a, b])
        c.register_system_shared_memory("in_data", "/tc_test_in", nbytes * 2)
        c.register_system_shared_memory("out_data", "/tc_test_out", nbytes * 2)
        status = c.get_system_shared_memory_status()
        assert {r["name"] for r in status} == {"in_data", "out_data"}
        i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        i0.set_shared_memory("in_data", nbytes)
        i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
        i1.set_shared_memory("in_data", nbytes, offset=nbytes)
        o0 = httpclient.InferRequestedOutput("OUTPUT0")
        o0.set_shared_memory("out_data", nbytes)
        o1 = httpclient.InferRequestedOutput("OUTPUT1")
        o1.set_shared_memory("out_data", nbytes, offset=nbytes)
        r = c.infer("add", [i0, i1], outputs=[o0, o1])
        out0 = r.get_output("OUTPUT0")
        got0 = shm.get_contents_as_numpy(oh, np.int32, [1, 16])
        got1 = shm.get_contents_as_numpy(oh, np.int32, [1, 16], offset=nbytes)
        assert "parameters" not in out0 and out0["shape"] == [1, 16]
        np.testing.assert_array_equal(got0, a + b)
        np.testing.assert_array_equal(got1, a - b)
        # offsets past the region, sizes larger than it, unknown names: clear errors
        bad = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        bad.set_shared_memory("in_data", nbytes, offset=nbytes * 2)
        with pytest.raises(InferenceServerException, match="Invalid offset"):
            c.infer("add", [bad, i1])
        with pytest.raises(InferenceServerException):
            c.register_system_shared_memory("big", "/tc_test_in", nbytes * 100)
        with pytest.raises(InferenceServerException, match="reserved prefix"):
            c.register_system_shared_memory("x", "triton_python_backend_shm_region_1", 8)
        gone = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        gone.set_shared_memory("nope", nbytes)
        with pytest.raises(InferenceServerException, match="Unable to find"):
            c.infer("add", [gone, i1])
        c.unregister_system_shared_memory("in_data")
        assert [r["name"] for r in c.get_system_shared_memory_status()] == ["out_data"]
        c.unregister_system_shared_memory()
        assert c.get_system_shared_memory_status() == []
        assert c.is_server_live()
    finally:
        shm.destroy_shared_memory_region(ih)
        shm.destroy_shared_memory_region(oh)


def test_large_registration_offset(url):
    # Triton's test_large_shm_register_offset: each region is registered one page before
    # the end of a 1024-page object; inputs and outputs live at that offset
    page = os.sysconf("SC_PAGE_SIZE")
    c = httpclient.InferenceServerClient(url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    handles = [shm.create_shared_memory_region(n, f"/tc_big_{n}", page * 1024)
               for n in ("i0", "i1", "o0", "o1")]
    try:
        for n in ("i0", "i1", "o0", "o1"):
            c.register_system_shared_memory(n, f"/tc_big_{n}", 64, offset=page * 1023)
        shm.set_shared_memory_region(handles[0], [a], offset=page * 1023)
        shm.set_shared_memory_region(handles[1], [b], offset=page * 1023)
        ins = [httpclient.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in (0, 1)]
        outs = [httpclient.InferRequestedOutput(f"OUTPUT{i}") for i in (0, 1)]
        for i in (0, 1):
            ins[i].set_shared_memory(f"i{i}", 64)
            outs[i].set_shared_memory(f"o{i}", 64)
        c.infer("add", ins, outputs=outs)
        got0 = shm.get_contents_as_numpy(handles[2], np.int32, [1, 16], offset=page * 1023)
        got1 = shm.get_contents_as_numpy(handles[3], np.int32, [1, 16], offset=page * 1023)
        np.testing.assert_array_equal(got0, a + b)
        np.testing.assert_array_equal(got1, a - b)
    finally:
        c.unregister_system_shared_memory()
        for h in handles:
            shm.destroy_shared_memory_region(h)


def test_shared_memory_is_off_by_default(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as s, serving_http(s) as u:
        c = httpclient.InferenceServerClient(u)
        with pytest.raises(InferenceServerException, match="allow-client-shm"):
            c.register_system_shared_memory("r", "/tc_x", 64)
        assert "system_shared_memory" not in c.get_server_metadata()["extensions"]


def test_repeated_shared_memory_requests_reuse_their_header(url, monkeypatch):
    """The second and later requests skip the header parse (http_plan) yet read fresh data
    and fresh registrations: new contents each time, and the region's removal is seen."""
    import triton_core.frontends.http.app as http_mod

    calls = []
    real = http_mod.parse_request
    monkeypatch.setattr(http_mod, "parse_request", lambda *a, **k: calls.append(1) or real(*a, **k))
    c = httpclient.InferenceServerClient(url)
    nbytes = 64
    ih = shm.create_shared_memory_region("pin", "/tc_plan_in", nbytes * 2)
    oh = shm.create_shared_memory_region("pout", "/tc_plan_out", nbytes * 2)
    try:
        c.register_system_shared_memory("pin", "/tc_plan_in", nbytes * 2)
        c.register_system_shared_memory("pout", "/tc_plan_out", nbytes * 2)
        i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        i0.set_shared_memory("pin", nbytes)
        i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
        i1.set_shared_memory("pin", nbytes, offset=nbytes)
        o0 = httpclient.InferRequestedOutput("OUTPUT0")
        o0.set_shared_memory("pout", nbytes)
        o1 = httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)
        for k in range(4):
            a = np.full((1, 16), k, dtype=np.int32)
            b = np.arange(16, dtype=np.int32).reshape(1, 16)
            shm.set_shared_memory_region(ih, [a, b])
            r = c.infer("add", [i0, i1], outputs=[o0, o1])
            np.testing.assert_array_equal(shm.get_contents_as_numpy(oh, np.int32, [1, 16]), a + b)
            np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
            assert "parameters" not in r.get_output("OUTPUT0")
        assert len(calls) == 1
        c.unregister_system_shared_memory("pin")
        with pytest.raises(InferenceServerException, match="Unable to find shared memory region: 'pin'"):
            c.infer("add", [i0, i1], outputs=[o0, o1])
        assert c.is_server_live()
    finally:
        c.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(ih)
        shm.destroy_shared_memory_region(oh)


def _key(tag):
    import uuid

    return f"/tc_{tag}_{uuid.uuid4().hex[:10]}"  # unique: /dev/shm is the machine's


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="truncates the object through /dev/shm")
def test_a_region_truncated_after_registration_fails_the_request_not_the_server(url):
    """A client shrinking its object after registering used to kill the server with SIGBUS
    (exit 135) on the next request touching it, on the input and on the output path."""
    c = httpclient.InferenceServerClient(url)
    nbytes = 64
    kin, kout = _key("trunc_in"), _key("trunc_out")
    ih = shm.create_shared_memory_region("tin", kin, nbytes * 2)
    oh = shm.create_shared_memory_region("tout", kout, nbytes * 2)
    try:
        c.register_system_shared_memory("tin", kin, nbytes * 2)
        c.register_system_shared_memory("tout", kout, nbytes * 2)
        a = np.ones((1, 16), dtype=np.int32)
        i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        i0.set_shared_memory("tin", nbytes)
        i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
        i1.set_data_from_numpy(a)
        o0 = httpclient.InferRequestedOutput("OUTPUT0")
        o0.set_shared_memory("tout", nbytes)
        os.truncate("/dev/shm/" + kin.lstrip("/"), 0)
        with pytest.raises(InferenceServerException, match="truncated to 0 bytes"):
            c.infer("add", [i0, i1])
        plain = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        plain.set_data_from_numpy(a)
        os.truncate("/dev/shm/" + kout.lstrip("/"), 0)
        with pytest.raises(InferenceServerException, match="truncated to 0 bytes"):
            c.infer("add", [plain, i1], outputs=[o0])
        r = c.infer("add", [plain, i1])  # still serving
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + a)
    finally:
        c.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(ih)
        shm.destroy_shared_memory_region(oh)


def test_an_output_region_is_the_one_registered_when_the_request_was_accepted(tmp_path):
    """Unregistering a region while a request runs and registering another client's object
    under its name must not send that request's output to the new object."""
    import threading

    import expr_backend
    from waiting import wait_until

    blocking = ADD_SUB + 'parameters { key: "block_value" value { string_value: "-7" } }\n'
    write_model(tmp_path, "add", blocking)
    nbytes = 64
    ka, kb = _key("lease_a"), _key("lease_b")
    ha = shm.create_shared_memory_region("a", ka, nbytes)
    hb = shm.create_shared_memory_region("b", kb, nbytes)
    with make_server(tmp_path, allow_client_shm=True) as s, serving_http(s) as u:
        c = httpclient.InferenceServerClient(u)
        inst = s.manager.get("add").instances[0]
        expr_backend.GATE.clear()
        try:
            c.register_system_shared_memory("out", ka, nbytes)
            x = np.full((1, 16), -7, dtype=np.int32)
            i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
            i0.set_data_from_numpy(x)
            i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
            i1.set_data_from_numpy(x)
            o0 = httpclient.InferRequestedOutput("OUTPUT0")
            o0.set_shared_memory("out", nbytes)
            got: list = []
            run = threading.Thread(target=lambda: got.append(
                httpclient.InferenceServerClient(u).infer("add", [i0, i1], outputs=[o0])))
            run.start()
            wait_until(lambda: inst.blocked == 1, "the request to block in execute")
            c.unregister_system_shared_memory("out")
            c.register_system_shared_memory("out", kb, nbytes)  # "another client's" object
        finally:
            expr_backend.GATE.set()
        run.join(10)
        assert got
        np.testing.assert_array_equal(shm.get_contents_as_numpy(ha, np.int32, [1, 16]), x + x)
        assert not shm.get_contents_as_numpy(hb, np.int32, [1, 16]).any()
        c.unregister_system_shared_memory()
    shm.destroy_shared_memory_region(ha)
    shm.destroy_shared_memory_region(hb)


def test_registrations_are_capped(tmp_path):
    """Unlimited registrations exhausted the process's memory maps (~65k)."""
    write_model(tmp_path, "add", ADD_SUB)
    key = _key("cap")
    h = shm.create_shared_memory_region("cap", key, 64)
    try:
        with make_server(tmp_path, allow_client_shm=True, shm_max_regions=2) as s, \
                serving_http(s) as u:
            c = httpclient.InferenceServerClient(u)
            c.register_system_shared_memory("r0", key, 64)
            c.register_system_shared_memory("r1", key, 64)
            with pytest.raises(InferenceServerException, match="maximum of 2 registered"):
                c.register_system_shared_memory("r2", key, 64)
            c.unregister_system_shared_memory("r0")
            c.register_system_shared_memory("r2", key, 64)
            assert {r["name"] for r in c.get_system_shared_memory_status()} == {"r1", "r2"}
            c.unregister_system_shared_memory()
    finally:
        shm.destroy_shared_memory_region(h)


def test_the_region_cap_is_a_flag_with_a_default():
    from triton_core.cli import build_parser, options_from_args

    p = build_parser()
    repo = ["--model-repository", "/nonexistent"]
    assert options_from_args(p.parse_args(repo)).shm_max_regions == 1024
    assert options_from_args(p.parse_args([*repo, "--shm-max-regions", "8"])).shm_max_regions == 8
    with pytest.raises(ValueError, match="at least 1"):
        options_from_args(p.parse_args([*repo, "--shm-max-regions", "0"]))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="truncates the object through /dev/shm")
def test_a_region_truncated_while_the_model_runs_fails_nothing(tmp_path):
    """The model gets a copy of a shared-memory input: a client truncating its object while
    the model runs must not kill the server (a view of the pages did: SIGBUS)."""
    import threading

    import expr_backend
    from waiting import wait_until

    blocking = ADD_SUB + 'parameters { key: "block_value" value { string_value: "-7" } }\n'
    write_model(tmp_path, "add", blocking)
    nbytes = 64
    key = _key("trunc_run")
    handle = shm.create_shared_memory_region("in", key, nbytes)
    x = np.full((1, 16), -7, dtype=np.int32)
    shm.set_shared_memory_region(handle, [x])
    with make_server(tmp_path, allow_client_shm=True) as s, serving_http(s) as u:
        c = httpclient.InferenceServerClient(u)
        inst = s.manager.get("add").instances[0]
        expr_backend.GATE.clear()
        try:
            c.register_system_shared_memory("in", key, nbytes)
            i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
            i0.set_shared_memory("in", nbytes)
            i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
            i1.set_data_from_numpy(x)
            got: list = []
            run = threading.Thread(target=lambda: got.append(
                httpclient.InferenceServerClient(u).infer("add", [i0, i1])))
            run.start()
            wait_until(lambda: inst.blocked == 1, "the request to block in execute")
            os.truncate("/dev/shm/" + key.lstrip("/"), 0)
        finally:
            expr_backend.GATE.set()
        run.join(10)
        assert got, "no response"
        np.testing.assert_array_equal(got[0].as_numpy("OUTPUT0"), x + x)
        c.unregister_system_shared_memory()
    shm.destroy_shared_memory_region(handle)


def test_a_wrong_shm_byte_size_is_refused_with_tritons_words(url):
    c = httpclient.InferenceServerClient(url)
    key = _key("size")
    h = shm.create_shared_memory_region("sz", key, 128)
    try:
        c.register_system_shared_memory("sz", key, 128)
        i0 = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        i0.set_shared_memory("sz", 128)  # 64 bytes expected
        i1 = httpclient.InferInput("INPUT1", [1, 16], "INT32")
        i1.set_data_from_numpy(np.ones((1, 16), np.int32))
        with pytest.raises(InferenceServerException, match=(
                r"input byte size mismatch for input 'INPUT0' for model 'add'\. Expected 64, "
                r"got 128")):
            c.infer("add", [i0, i1])
    finally:
        c.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(h)
