"""triton_core.testing: the helpers the core's, the plugins' and conformance's tests share."""

import pytest
import tritonclient.http as httpclient

import expr_backend
from expr_backend import ADD_SUB, write_model
from triton_core import testing


def test_make_server_registers_only_the_given_plugins(tmp_path, monkeypatch):
    # entry points stay off even where the environment would load them
    monkeypatch.delenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    write_model(tmp_path, "add", ADD_SUB)
    with testing.make_server(tmp_path, expr_backend.plugin) as s:
        assert [e.name for e in s.registry.entries] == [expr_backend.NAME]
        assert s.model_ready("add")


def test_serving_http_and_loop_thread(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    with testing.make_server(tmp_path, expr_backend.plugin) as s, testing.serving_http(s) as url:
        c = httpclient.InferenceServerClient(url)
        assert c.is_model_ready("add")
        c.close()
    with testing.LoopThread() as lt:
        async def seven() -> int:
            return 7

        assert lt.run(seven()) == 7 and lt.submit(seven()).result(5) == 7
    assert lt.loop.is_closed()


def test_wait_until_fails_with_what_it_waited_for():
    testing.wait_until(lambda: True, "nothing")
    with pytest.raises(AssertionError, match="the impossible"):
        testing.wait_until(lambda: False, "the impossible", timeout=0.01)
    assert isinstance(testing.free_port(), int)
