"""Triton's protobuf modules without tritonclient's gRPC client (triton_core/protos.py): the
same message classes as the client's, whichever is imported first, and no grpcio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from triton_core import protos


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_loading_them_imports_neither_grpcio_nor_the_client_and_their_classes_are_the_clients():
    r = _run(
        "import sys\n"
        "from triton_core.protos import model_config_pb2, service_pb2\n"
        "assert service_pb2.ModelInferRequest.DESCRIPTOR.file.name == 'grpc_service.proto'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'tritonclient', 'ml_dtypes')))\n"
        "import tritonclient.grpc as client\n"
        "assert client.service_pb2.ModelInferRequest is service_pb2.ModelInferRequest\n"
        "assert client.model_config_pb2.ModelConfig is model_config_pb2.ModelConfig\n"
        "assert client.InferenceServerClient is not None  # the client imports whole\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_after_the_client_they_are_the_clients_modules():
    r = _run(
        "import tritonclient.grpc as client\n"
        "from triton_core.protos import model_config_pb2, service_pb2\n"
        "assert service_pb2 is client.service_pb2 and model_config_pb2 is client.model_config_pb2\n")
    assert r.returncode == 0, r.stderr


def test_a_message_parses_and_writes_as_the_clients():
    from tritonclient.grpc import service_pb2 as client_pb

    msg = protos.service_pb2.ModelInferRequest(model_name="m", id="7")
    back = client_pb.ModelInferRequest.FromString(msg.SerializeToString())
    assert back == msg and back.model_name == "m"


def test_without_tritonclient_the_error_names_it():
    r = _run(
        "import sys\n"
        "sys.modules['tritonclient'] = None  # as if not installed\n"
        "from triton_core.protos import model_config_pb2\n")
    assert r.returncode == 1
    assert "ModuleNotFoundError: No module named 'tritonclient'" in r.stderr


def test_another_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'grpc_service_pb2_grpc'"):
        protos.grpc_service_pb2_grpc  # noqa: B018
