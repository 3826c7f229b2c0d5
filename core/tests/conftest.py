import pytest


@pytest.fixture(autouse=True)
def _no_entry_point_plugins(monkeypatch):
    # Core tests register their own test backend; installed plugins stay out.
    monkeypatch.setenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """A started server over http_helpers' repository (shared by a test module)."""
    from expr_backend import make_server
    from http_helpers import build_repo

    repo = build_repo(tmp_path_factory.mktemp("repo"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
        server = make_server(repo)
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def addr(http_server):
    from live_server import serving_http

    with serving_http(http_server) as a:
        yield a


@pytest.fixture
def client(addr):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(addr)
    yield c
    c.close()
