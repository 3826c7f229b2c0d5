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
