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


def _ca(tmp_path, name):
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return key, cert


def _signed(tmp_path, name, ca, ext):
    key, csr, cert = (tmp_path / f"{name}.{x}" for x in ("key", "csr", "crt"))
    extfile = tmp_path / f"{name}.ext"
    extfile.write_text(ext + "\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(csr), "-subj", f"/CN={name}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
                    "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(extfile)],
                   check=True, capture_output=True)
    return key, cert


def test_grpc_over_mutual_tls(tmp_path):
    ca = _ca(tmp_path, "test-ca")
    server_key, server_cert = _signed(tmp_path, "localhost", ca,
                                      "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                      "extendedKeyUsage=serverAuth")
    client_key, client_cert = _signed(tmp_path, "client", ca, "extendedKeyUsage=clientAuth")
    other_ca = _ca(tmp_path, "other-ca")
    stranger_key, stranger_cert = _signed(tmp_path, "stranger", other_ca, "extendedKeyUsage=clientAuth")
    r = start_server(tmp_path, "--model-repository", str(EXAMPLES), "--grpc-use-ssl-mutual=true",
                     "--grpc-server-cert", str(server_cert), "--grpc-server-key", str(server_key),
                     "--grpc-root-cert", str(ca[1]))
    url = f"localhost:{r.grpc}"
    a = np.arange(16, dtype=np.int32).reshape(1, 16)

    def infer(c):
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                  grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        np.testing.assert_array_equal(c.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)

    try:
        with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(ca[1]),
                                              private_key=str(client_key),
                                              certificate_chain=str(client_cert)) as c:
            infer(c)
            # refused: no client certificate, one from another CA, no TLS at all
            with grpcclient.InferenceServerClient(url, ssl=True,
                                                  root_certificates=str(ca[1])) as anonymous:
                with pytest.raises(InferenceServerException):
                    anonymous.is_server_live(client_timeout=2)
            with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(ca[1]),
                                                  private_key=str(stranger_key),
                                                  certificate_chain=str(stranger_cert)) as stranger:
                with pytest.raises(InferenceServerException):
                    stranger.is_server_live(client_timeout=2)
            with grpcclient.InferenceServerClient(url) as plain:
                with pytest.raises(InferenceServerException):
                    plain.is_server_live(client_timeout=2)
            infer(c)  # the server serves on, on the same connection
        with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(ca[1]),
                                              private_key=str(client_key),
                                              certificate_chain=str(client_cert)) as c:
            infer(c)  # and to a new one
            assert c.is_server_live()
    finally:
        assert stop_server(r) == 0, r.log.read_text()
