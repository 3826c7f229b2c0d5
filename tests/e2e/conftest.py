import pytest

from e2e_server import EXAMPLES, start_server, stop_server


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory):
    r = start_server(tmp_path_factory.mktemp("srv"), "--model-repository", str(EXAMPLES))
    yield r
    assert stop_server(r) == 0, r.log.read_text()
