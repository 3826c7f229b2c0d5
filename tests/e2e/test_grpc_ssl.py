import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from e2e_server import EXAMPLES, start_server, stop_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _self_signed(tmp_path):
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


def test_grpc_over_tls(tmp_path):
    key, cert = _self_signed(tmp_path)
    r = start_server(tmp_path, "--model-repository", str(EXAMPLES), "--grpc-use-ssl=true",
                     "--grpc-server-cert", str(cert), "--grpc-server-key", str(key))
    try:
        c = grpcclient.InferenceServerClient(f"localhost:{r.grpc}", ssl=True,
                                             root_certificates=str(cert))
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                  grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        np.testing.assert_array_equal(c.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)
        plain = grpcclient.InferenceServerClient(f"localhost:{r.grpc}")
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=2)
    finally:
        assert stop_server(r) == 0


def test_tls_flags_need_cert_and_key(tmp_path):
    from e2e_server import BIN

    res = subprocess.run([str(BIN / "tritonserver"), "--model-repository", str(EXAMPLES),
                          "--grpc-use-ssl=true"], capture_output=True, text=True)
    assert res.returncode != 0 and "--grpc-server-cert" in res.stderr


def test_grpc_restricted_protocol(tmp_path):
    r = start_server(tmp_path, "--model-repository", str(EXAMPLES),
                     "--grpc-restricted-protocol=model-repository,metadata:admin-key=secret")
    try:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{r.grpc}")
        assert c.is_server_live()  # health is not restricted
        with pytest.raises(InferenceServerException, match="expecting header 'admin-key'"):
            c.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="restricted"):
            c.get_server_metadata()
        assert c.get_model_repository_index(headers={"admin-key": "secret"}).models
        assert c.get_server_metadata(headers={"admin-key": "secret"}).name
    finally:
        assert stop_server(r) == 0
