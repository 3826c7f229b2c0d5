"""--http-header-forward-pattern / --grpc-header-forward-pattern: matching request headers
reach the backend as request parameters (Triton's L0_parameters cases)."""

import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import ErrorCode, TritonError
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.frontends.header_forward import HeaderForward
from triton_core.testing import LoopThread, serving_http

HEADERS = {"header_1": "value_1", "my_header_1": "my_value_1", "my_header_2": "my_value_2",
           "my_header_3": 'This is a "quoted" string with a backslash\\ '}
FORWARDED = {k: v for k, v in HEADERS.items() if k.startswith("my_header")}
# HTTP/2 forbids a field value ending in whitespace (RFC 9113 8.2.1): our h2 engine resets
# such a stream (grpcio's C-core passes it on): the gRPC cases send the value trimmed.
GRPC_HEADERS = {k: v.strip() for k, v in HEADERS.items()}
GRPC_FORWARDED = {k: v.strip() for k, v in FORWARDED.items()}


@pytest.fixture
def served(tmp_path):
    """A started server whose 'add' instance records each request's parameters."""
    write_model(tmp_path, "add", ADD_SUB)
    with make_server(tmp_path) as s:
        seen: list[dict] = []
        inst = s.manager.get("add").instances[0]
        orig = inst.execute

        def spy(requests, timer):
            seen.extend(dict(r.parameters) for r in requests)
            return orig(requests, timer)

        inst.execute = spy
        yield s, seen


def _http_inputs():
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
              httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    for i in inputs:
        i.set_data_from_numpy(a)
    return inputs


def _grpc_inputs():
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
              grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
    for i in inputs:
        i.set_data_from_numpy(a)
    return inputs


@pytest.mark.parametrize("pattern", ["my_header.*", "MY_HEADER.*"])
def test_http_headers_matching_the_pattern_become_parameters(served, pattern):
    s, seen = served
    with serving_http(s, header_forward_pattern=pattern) as addr:
        client = httpclient.InferenceServerClient(addr)
        client.infer("add", _http_inputs(), headers=dict(HEADERS), parameters={"key1": "v"})
        client.infer("add", _http_inputs(), headers={"my_header_1": "from the header"},
                     parameters={"my_header_1": "from the request"})
        client.close()
    assert seen[0] == {**FORWARDED, "key1": "v"}  # (tritonclient adds to the dict it is given)
    assert seen[1] == {"my_header_1": "from the request"}  # the request's own value stays


def test_without_a_pattern_no_header_is_forwarded(served):
    s, seen = served
    with serving_http(s) as addr:
        client = httpclient.InferenceServerClient(addr)
        client.infer("add", _http_inputs(), headers=dict(HEADERS))
        client.close()
    assert seen == [{}]


def test_a_forwarded_reserved_name_is_refused_in_tritons_words(served):
    s, _ = served
    with serving_http(s, header_forward_pattern="triton_.*") as addr:
        client = httpclient.InferenceServerClient(addr)
        with pytest.raises(InferenceServerException) as e:
            client.infer("add", _http_inputs(), headers={"triton_x": "1"})
        assert "parameter keys starting with 'triton_' are reserved for Triton usage" in str(e.value)
        client.infer("add", _http_inputs())  # the server keeps serving
        client.close()


@pytest.mark.parametrize("engine", ["h2", "grpcio"])
@pytest.mark.parametrize("pattern, expected", [
    ("my_header.*", GRPC_FORWARDED),
    ("MY_HEADER.*", GRPC_FORWARDED),
    ("(?-i)MY_HEADER.*", {}),  # case-sensitive: gRPC metadata keys are lower case
])
def test_grpc_metadata_matching_the_pattern_become_parameters(served, engine, pattern, expected):
    s, seen = served
    with LoopThread() as loop:
        front = GrpcFrontEnd(s, "127.0.0.1", 0, engine=engine, header_forward_pattern=pattern)
        loop.run(front.start())
        try:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
            client.infer("add", _grpc_inputs(), headers=dict(GRPC_HEADERS))
            client.close()
        finally:
            loop.run(front.stop(0))
    assert seen == [expected]


def test_h2_resets_a_stream_whose_metadata_ends_in_whitespace_and_serves_on(served):
    s, seen = served
    with LoopThread() as loop:
        front = GrpcFrontEnd(s, "127.0.0.1", 0, engine="h2", header_forward_pattern="my_.*")
        loop.run(front.start())
        try:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
            with pytest.raises(InferenceServerException):
                client.infer("add", _grpc_inputs(), headers={"my_header": "trailing "})
            client.infer("add", _grpc_inputs(), headers={"my_header": "trimmed"})
            client.close()
        finally:
            loop.run(front.stop(0))
    assert seen == [{"my_header": "trimmed"}]


def test_an_invalid_pattern_is_refused():
    with pytest.raises(TritonError) as e:
        HeaderForward("my_header(", "--http-header-forward-pattern")
    assert e.value.code is ErrorCode.INVALID_ARG and "--http-header-forward-pattern" in e.value.message


@pytest.mark.parametrize("flag", ["--http-header-forward-pattern", "--grpc-header-forward-pattern"])
def test_an_invalid_pattern_stops_the_start(flag, tmp_path):
    r = subprocess.run([sys.executable, "-m", "triton_core.cli", "--model-repository", str(tmp_path),
                        f"{flag}=bad(("], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and flag in r.stderr, r.stderr
